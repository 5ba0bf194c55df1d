"""The model card: written by training, refreshed by the evaluation, read back by the Hub's own parser
(``huggingface_hub.ModelCard``) with the metadata and every number of ``metrics.json``; its command resolves to the
run's settings."""
import json
import shlex
import shutil

import pytest
from huggingface_hub import ModelCard

import train
from mergan.card import command, evaluation, write_card
from mergan.config import resolve
from mergan.data import load_task_data
from mergan.scores import Metrics
from mergan.runs import RunFolder, run_id
from mergan.tables import percent


def test_training_writes_a_card_that_says_it_is_not_evaluated(evaluated_run):
    card = ModelCard(evaluated_run.card_after_training)
    data = card.data.to_dict()
    assert data["library_name"] == "mergan" and data["license"] == "mit"
    assert {"continual-learning", "gan", "mnist", "mergan-ra"} <= set(data["tags"])
    assert "model-index" not in data and "datasets" not in data   # no results; the slice is not the Hub's MNIST
    assert "None yet: this run has not been evaluated (no metrics.json)" in card.text
    assert "![Samples after task 1](samples/task_01.png)" in card.text


def test_the_evaluation_refreshes_the_card_with_every_number_of_metrics_json(evaluated_run):
    run = RunFolder(evaluated_run.path)
    m = Metrics.from_dict(json.loads(run.metrics_path.read_text()))
    card = ModelCard.load(run.card_path)   # the Hub's parser
    results = {r.metric_name: r for r in card.data.eval_results}
    assert card.data.model_name == "MeRGAN-RA on MNIST, classes 3, 0"
    expected = {"Average accuracy after 2 tasks (cnn32 evaluator, %)": round(100 * m.final.main.average, 2),
                "Average accuracy after 2 tasks (mlp32 evaluator, %)": round(100 * m.final.second.average, 2),
                "Reverse accuracy (classifier trained on generated images, %)":
                    round(100 * m.variety.reverse_accuracy, 2),
                "FID in the cnn32 evaluator's features (not Inception)": round(m.fid["overall"], 2)}
    assert {k: r.metric_value for k, r in results.items()} == expected
    for r in results.values():
        assert (r.task_type, r.dataset_type, r.dataset_split) == ("image-generation", "mnist", "test")
    assert card.data.metrics == ["accuracy"]
    # The per-task tables: every class's accuracy after every task, by each evaluator, as metrics.json has it.
    for t in m.tasks:
        for scores in (t.main, t.second):
            row = f"| {t.task} | " + " | ".join(percent(scores.per_class.get(c)) for c in m.classes)
            assert row + f" | {percent(scores.average)} |" in card.text
    assert f"recognised by real-data classifiers at {percent(m.final.main.average)}% on average" in card.text
    low_class, low = m.final.strict.lowest()
    assert f"the lowest class, {low_class}, at {percent(low)}%" in card.text
    assert "![Every class after every task](forgetting_grid.png)" in card.text
    assert "None yet" not in card.text and str(evaluated_run.path.parent) not in card.data.to_yaml()


def test_a_card_says_when_the_evaluation_is_older_than_the_last_task(evaluated_run, tmp_path):
    run = RunFolder(shutil.copytree(evaluated_run.path, tmp_path / "ra"))
    m = run.read_metrics()
    m.tasks = m.tasks[:1]     # as if evaluated before the run was extended by its second task
    run.write_metrics(m)
    metrics, why = evaluation(run, run.read_record())
    assert metrics is None and "was evaluated on 1 task file(s) but has 2 now" in why
    card = ModelCard.load(write_card(run))
    assert card.data.eval_results is None and "evaluated on 1 task file(s)" in card.text


def _resolved_from(text, data_dir):
    """The RunConfig that the card's command resolves to."""
    argv = shlex.split(text.replace("\\\n", " "))[2:]   # after "mergan train"
    args = train.build_parser().parse_args([a if a != "DATA" else str(data_dir) for a in argv])
    data = load_task_data(args.dataset, args.data_dir or "data", args.classes)
    return train.make_config(args, data)


@pytest.mark.parametrize("strategy,preset,overrides", [
    ("ra", "quick", {}), ("ra", "paper", {"iters": 7, "batch_size": 8}), ("ewc", "paper", {"ewc_lambda": 1e5}),
    ("jtr", "quick", {"replay_batch": 16, "betas": "0.5,0.999", "lr": 3e-4}), ("joint", "paper-8k", {}),
])
def test_the_cards_command_resolves_to_the_runs_settings(mnist_slice, strategy, preset, overrides):
    data = load_task_data("mnist", mnist_slice, "3,0,1")
    cfg = resolve(data, strategy=strategy, preset=preset, seed=4, overrides=overrides)
    again = _resolved_from(command(cfg), mnist_slice)
    assert again == cfg and run_id(again) == run_id(cfg)


def test_the_command_of_a_run_on_the_shipped_mnist_needs_no_data_dir():
    data = load_task_data("mnist", "nowhere", "0,1")
    cfg = resolve(data, strategy="sft", preset="quick")
    text = command(cfg)
    assert "--data-dir" not in text and _resolved_from(text, None) == cfg
