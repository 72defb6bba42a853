"""The course's exercises: one module per notebook, each with a check and a solution per exercise.

A notebook's exercise is a function stub the learner fills in (``raise NotImplementedError`` until
then). ``check_<exercise>(function) -> bool`` runs that function on several cases, edge cases
included, compares it with the reference in ``dsm_ref`` (or scipy/torch where ``dsm_ref`` uses
them), and prints in a sentence or two either that it is correct or what is wrong: which case,
what was expected, what came back, and a hint. A stub gets "not attempted yet" and ``False``,
never a traceback, so every notebook runs top to bottom. ``solution_<exercise>`` is a worked
solution; ``check_<exercise>(solution_<exercise>)`` is ``True`` (``tests/test_exercises.py``).

One module per notebook:

- :mod:`.dct`: notebook 01, the DCT from scratch;
- :mod:`.spectrum`: notebook 02, the spectrum interactively;
- :mod:`.dswg`: notebook 03, the Dynamic Spectrum Weight Generator;
- :mod:`.blocks`: notebook 04, the DSM block and the model family;
- :mod:`.training`: notebook 05, training;
- :mod:`.ablations`: notebook 06, ablations and their statistics;
- :mod:`.complexity`: notebook 07, complexity and speed;
- :mod:`.dense`: notebook 08, dense prediction.

An application floor of the package (DESIGN.md section 4): it imports the core, data and train
floors, and no other application. The submodules are not imported here: a notebook imports the
one it needs, e.g. ``from dsm_ref.exercises.dct import check_dct_basis_image``.
"""

TOPICS = {
    "01_dct_from_scratch": "dct",
    "02_spectrum_interactive": "spectrum",
    "03_dswg": "dswg",
    "04_block_and_models": "blocks",
    "05_training": "training",
    "06_ablations": "ablations",
    "07_complexity_and_speed": "complexity",
    "08_dense_prediction": "dense",
}

__all__ = ["TOPICS"]
