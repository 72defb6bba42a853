"""dsm_ref.provenance: one record of where a result came from."""

import json

from dsm_ref.provenance import cpu_model, git_state, provenance


def test_provenance_names_code_machine_and_time():
    record = provenance("cpu")
    json.dumps(record)  # JSON-able
    for key in ("command", "git", "device", "cpu_model", "cpu_count", "torch_threads",
                "environment", "date"):
        assert key in record, key
    assert record["device"] == "cpu" and record["gpu"] is None
    assert record["cpu_model"] == cpu_model() and record["cpu_model"]


def test_git_state_hashes_uncommitted_changes():
    state = git_state()
    assert set(state) == {"commit", "dirty", "diff_sha256"}
    if state["commit"] is not None:  # inside a checkout
        assert len(state["commit"]) == 40
        assert (state["diff_sha256"] is None) == (not state["dirty"])
