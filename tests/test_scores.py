"""``metrics.json``'s variety record: reverse accuracy's confusion counted by hand, what each class is taken for,
the round trip, and files written before the confusion was kept."""
import json

import pytest
import torch

from mergan import classifier
from mergan.records import RecordError
from mergan.scores import Scores, Variety


def test_confusion_counts_and_taken_for_by_hand():
    """True 0 0 0 1 1 2, predicted 0 2 2 1 0 2: 0 -> {0: 1, 2: 2}; 1 -> {1: 1, 0: 1}; 2 -> {2: 1}. The 0s were
    taken for 2s (2 of 3), the 1s for 0s (1 of 2); the 2s for nothing else."""
    counts = classifier.confusion_counts(torch.tensor([0, 2, 2, 1, 0, 2]), torch.tensor([0, 0, 0, 1, 1, 2]),
                                         ["0", "1", "2"])
    assert counts == {"0": {"0": 1, "2": 2}, "1": {"0": 1, "1": 1}, "2": {"2": 1}}
    pr = {c: {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0} for c in "012"}
    v = Variety(Scores.of({"0": 1 / 3, "1": 0.5, "2": 1.0}), 0.5, Scores.of({"0": 1.0}), 1.0, 1, 1, pr, pr, 5,
                "test", counts)
    assert v.taken_for("0") == ("2", pytest.approx(2 / 3, abs=1e-6)) and v.taken_for("1") == ("0", 0.5)
    assert v.taken_for("2") is None
    again = Variety.from_dict(json.loads(json.dumps(v.to_dict())), "metrics.json")
    assert again.reverse_confusion == counts
    old = v.to_dict()
    del old["reverse_confusion"]   # metrics.json written before the confusion was kept
    assert Variety.from_dict(old, "metrics.json").taken_for("0") is None
    bad = v.to_dict()
    bad["reverse_confusion"]["0"]["2"] = -1
    with pytest.raises(RecordError, match="reverse_confusion"):
        Variety.from_dict(bad, "metrics.json")
