"""Models and training: hand-computed pieces, determinism, resume, and the CI-sized benchmark."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from coevofold.app import runs
from coevofold.data import tables
from coevofold.errors import CoevofoldError
from coevofold.features import extraction, pretrained
from coevofold.models import attention, ensemble, registry
from coevofold.training import checkpoint, mixture, recipe, trainer


def test_class_weights_hand_computed():
    # counts [3, 1], power 1 -> [1/3, 1]; mean over the 4 examples = 0.5 -> [2/3, 2]
    weights = trainer.class_weights(torch.tensor([0, 0, 0, 1]), 2, power=1.0)
    assert torch.allclose(weights, torch.tensor([2 / 3, 2.0]))
    assert torch.allclose(trainer.class_weights(torch.tensor([0, 0, 1]), 2, power=0.0), torch.ones(2))






@pytest.fixture(scope="module")
def tiny(tmp_path_factory, model_dir: Path) -> tuple[Path, pd.DataFrame]:
    """Features of 16 short real domains of 4 folds (3 train + 1 valid each)."""
    deepsf = tables.load("deepsf")
    short = deepsf[(deepsf["split"] == "train") & deepsf["length"].between(40, 90)]
    folds = short["fold"].value_counts().index[:4]
    table = pd.concat([short[short["fold"] == f].head(4) for f in folds], ignore_index=True)
    table["split"] = ["train", "train", "train", "valid"] * 4
    plm = pretrained.load(str(model_dir))
    path = extraction.extract(table, tmp_path_factory.mktemp("store") / "f.h5", extraction.FeatureConfig(maps="layers"),
                            extraction.RunConfig(progress=False, device="cpu"), plm=plm)
    return path, table


def _train(store: Path, table: pd.DataFrame, out: Path, epochs: int, patience: int | None = 100) -> dict[str, torch.Tensor]:
    config = trainer.TrainConfig(max_epochs=epochs, patience=patience, batch_size=4, progress=False)
    trainer.train(store, table, out, config)
    return load_file(str(out / checkpoint.MODEL_WEIGHTS))


class _Killed(Exception):
    pass


def _killed_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run stops right after it writes its first ``last.ckpt``, as a SIGKILL there would stop it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    save = ModelCheckpoint._save_checkpoint

    def save_then_die(self, trainer_, filepath):
        save(self, trainer_, filepath)
        if Path(filepath).name == "last.ckpt":
            raise _Killed

    monkeypatch.setattr(ModelCheckpoint, "_save_checkpoint", save_then_die)


@pytest.mark.parametrize("patience", [100, None], ids=["early-stopping", "fixed-budget"])
def test_same_seed_same_model_and_resume_repeats_the_run(tiny, tmp_path, monkeypatch, patience):
    store, table = tiny
    straight = _train(store, table, tmp_path / "a", 3, patience)
    again = _train(store, table, tmp_path / "b", 3, patience)
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    with monkeypatch.context() as killed:
        _killed_after_first_checkpoint(killed)
        with pytest.raises(_Killed):
            _train(store, table, tmp_path / "c", 3, patience)
    assert not (tmp_path / "c" / checkpoint.MODEL_WEIGHTS).exists()
    assert trainer._epochs_trained(tmp_path / "c" / "checkpoints" / "last.ckpt") == 1
    resumed = _train(store, table, tmp_path / "c", 3, patience)  # ...resumed from checkpoints/last.ckpt
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    curves_a = pd.read_csv(tmp_path / "a" / "metrics.csv").dropna(subset=["val_acc"])
    curves_c = pd.read_csv(tmp_path / "c" / "metrics.csv").dropna(subset=["val_acc"])
    assert curves_a["val_acc"].tolist() == curves_c["val_acc"].tolist()[-3:]
    # the loss is sensitive to every weight, so it shows a resume that trained differently
    assert curves_a["val_loss"].tolist() == curves_c["val_loss"].tolist()[-3:]
    assert (tmp_path / "a" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_fixed_budget_decays_the_learning_rate_to_zero_and_keeps_the_last_epoch(tiny, tmp_path):
    store, table = tiny
    _train(store, table, tmp_path / "run", 3, patience=None)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["lr_schedulers"][0]["last_epoch"] == 3 * 3  # 12 training rows in batches of 4, 3 epochs
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert not list((tmp_path / "run" / "checkpoints").glob("best*"))
    kept = load_file(str(tmp_path / "run" / checkpoint.MODEL_WEIGHTS))
    last = {k.removeprefix("classifier."): v for k, v in state["state_dict"].items() if k.startswith("classifier.")}
    assert all(torch.equal(kept[k], last[k]) for k in kept)
    meta = json.loads((tmp_path / "run" / checkpoint.MODEL_META).read_text())
    curve = pd.read_csv(tmp_path / "run" / "metrics.csv").dropna(subset=["val_acc"])
    assert meta["epochs"] == 3 and meta["best_val_acc"] == pytest.approx(curve["val_acc"].iloc[-1])


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_every_model_trains_and_reloads_weights_only(tiny, tmp_path, name):
    store, table = tiny
    out = tmp_path / name
    trainer.train(store, table, out, trainer.TrainConfig(model=registry.ModelConfig(name=name), max_epochs=1, progress=False))
    classifier, meta = checkpoint.load_model(out)
    split = checkpoint.load_split(store, table[table["split"] == "valid"], meta["classes"])
    probs = checkpoint.predict_proba(classifier, split)
    assert probs.shape == (4, 4)
    assert torch.allclose(torch.from_numpy(probs).sum(1), torch.ones(4), atol=1e-5)


def test_ci_benchmark_preset_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COEVOFOLD_CACHE", str(tmp_path / "cache"))
    results = runs.run_benchmark("deepsf-ci", tmp_path / "bench", models=("maps2d",), progress=False)
    assert "coevofold maps2d" in results and "alignment nearest neighbour (Smith-Waterman, E-value)" in results
    assert any(name.startswith("coevofold maps2d, homology transfer where E <= 1e-") for name in results)
    for level in ("test_fold", "test_superfamily", "test_family"):
        top1 = results["coevofold maps2d"][level]["metrics"]["top1"]
        assert 0 <= top1["ci_low"] <= top1["value"] <= top1["ci_high"] <= 1
    out = capsys.readouterr().out
    assert "DeepSF (published)" in out and "not comparable" in out
    assert (tmp_path / "bench" / "results.json").exists()


def test_smoothing_matrix_hand_computed():
    classes = ["a.1", "a.2", "b.1"]
    uniform = trainer.smoothing_matrix(classes, 0.3, "uniform")
    assert torch.allclose(uniform[0], torch.tensor([0.7 + 0.1, 0.1, 0.1]))
    within = trainer.smoothing_matrix(classes, 0.3, "class")
    # a.1: 0.7 on itself, 0.3 spread over a.1 and a.2; b.1 is alone in its class
    assert torch.allclose(within[0], torch.tensor([0.85, 0.15, 0.0]))
    assert torch.allclose(within[2], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(within.sum(1), torch.ones(3))


def test_light_attention_is_a_weighted_mean_plus_max():
    branch = attention.LightAttention(2, 2, kernel=1)
    with torch.no_grad():
        for conv in (branch.values, branch.scores):
            conv.weight.copy_(torch.eye(2)[..., None])
            conv.bias.zero_()
        branch.scores.weight.zero_()  # equal scores: the attention is a plain mean
    x = torch.tensor([[[1.0, 2.0, 6.0], [0.0, -3.0, 3.0]]])
    assert torch.allclose(branch(x), torch.tensor([[3.0, 0.0, 6.0, 3.0]]))






def test_hierarchy_heads_lower_their_loss_and_round_trip(tiny, tmp_path):
    store, table = tiny
    levels = ("fold", "superfamily", "family")
    config = trainer.TrainConfig(model=registry.ModelConfig(name="layers", levels=levels), max_epochs=1,
                                  progress=False, smoothing_target="class")
    out = trainer.train(store, table, tmp_path / "h", config)
    classifier, meta = checkpoint.load_model(out)
    assert meta["model"]["levels"] == list(levels) and set(meta["level_classes"]) == {"superfamily", "family"}
    train_rows = table[table["split"] == "train"]
    split = checkpoint.load_split(store, train_rows, meta["classes"], meta["level_classes"])
    batch = split.batch(list(range(len(split))), registry.MODELS["layers"])
    classifier.train()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        logits = classifier.forward_levels(batch)
        return (torch.nn.functional.cross_entropy(logits["fold"], split.labels)
                + sum(torch.nn.functional.cross_entropy(logits[k], v) for k, v in split.level_labels.items()))

    torch.manual_seed(0)
    before = loss()
    for _ in range(20):
        optimizer.zero_grad()
        step = loss()
        step.backward()
        optimizer.step()
    classifier.eval()
    with torch.no_grad():
        assert loss() < before
    reloaded, _ = checkpoint.load_model(out)
    valid = checkpoint.load_split(store, table[table["split"] == "valid"], meta["classes"])
    np_a = checkpoint.predict_proba(reloaded, valid)
    np_b = checkpoint.predict_proba(checkpoint.load_model(out)[0], valid)
    assert (np_a == np_b).all() and np_a.shape == (4, 4)


def test_lbfgs_probe_equals_scikit_learn(tiny, tmp_path):
    from sklearn.linear_model import LogisticRegression

    store, table = tiny
    config = trainer.TrainConfig(model=registry.ModelConfig(name="probe"), solver="lbfgs", C=0.5, progress=False)
    out = trainer.train(store, table, tmp_path / "p", config)
    classifier, meta = checkpoint.load_model(out)
    train_rows, valid_rows = table[table["split"] == "train"], table[table["split"] == "valid"]
    train = checkpoint.load_split(store, train_rows, meta["classes"])
    valid = checkpoint.load_split(store, valid_rows, meta["classes"])
    x = train.layers.float().flatten(1)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    reference = LogisticRegression(C=0.5, max_iter=1000, random_state=0).fit(((x - mean) / std).numpy(), train.labels.numpy())
    expected = reference.predict_proba(((valid.layers.float().flatten(1) - mean) / std).numpy())
    assert np.allclose(checkpoint.predict_proba(classifier, valid), expected, atol=1e-5)
    with pytest.raises(CoevofoldError, match="lbfgs"):
        trainer.train(store, table, tmp_path / "q", trainer.TrainConfig(model=registry.ModelConfig(name="layers"),
                                                                          solver="lbfgs", progress=False))


def test_fit_ensemble_weights_hand_computed():
    targets = np.array([0, 1, 1])
    a = np.array([[0.95, 0.05], [0.6, 0.4], [0.6, 0.4]])  # right on 1 of 3
    b = np.array([[0.4, 0.6], [0.1, 0.9], [0.1, 0.9]])  # right on 2 of 3
    # a mix with b's weight w gets all three right for 0.2 < w < 0.818 (protein 0: 0.95 - 0.55 w > 0.5;
    # proteins 1, 2: 0.4 + 0.5 w > 0.5); among those the log-loss falls as w grows, so 0.8 on the grid
    assert mixture.fit_ensemble_weights([a, b], targets).tolist() == pytest.approx([0.2, 0.8])


def test_seed_groups_share_one_weight_per_recipe():
    members = recipe.default_members(progress=False)
    groups = mixture.seed_groups({**members, "mlp_seed1": dataclasses.replace(members["mlp_seed1"], progress=True)})
    assert groups == [["probe"], ["mlp", "mlp_seed1"], ["attention"]]
    wider = {**members, "mlp_seed1": dataclasses.replace(members["mlp_seed1"], lr=3e-3)}
    assert ["mlp_seed1"] in mixture.seed_groups(wider)  # another recipe, not another seed


def test_ensemble_trains_members_mixes_on_valid_and_reloads(tiny, tmp_path):
    store, table = tiny
    mlp = trainer.TrainConfig(model=registry.ModelConfig(name="layers", levels=("fold", "superfamily")),
                               max_epochs=1, progress=False)
    members = {"probe": trainer.TrainConfig(model=registry.ModelConfig(name="probe"), solver="lbfgs", progress=False),
               "mlp": mlp, "mlp_seed1": dataclasses.replace(mlp, seed=1)}
    out = mixture.train_ensemble(store, table, tmp_path / "e", members)
    loaded, meta = checkpoint.load_model(out)
    assert isinstance(loaded, ensemble.Ensemble) and meta["model"]["name"] == "ensemble"
    # model.json names the pLM that made the features as it was loaded (the offline copy, here)
    plm_label = checkpoint.load_model(out / "members" / "mlp")[1]["plm"]
    assert meta["plm"] == plm_label and plm_label.startswith("offline copy ") and "sha256 " in plm_label
    weights = meta["ensemble"]["weights"]
    assert set(weights) == set(members) and sum(weights.values()) == pytest.approx(1.0)
    assert weights["mlp"] == weights["mlp_seed1"]  # seeds share their recipe's weight
    valid = checkpoint.load_split(store, table[table["split"] == "valid"], meta["classes"])
    parts = {name: checkpoint.predict_proba(checkpoint.load_model(out / "members" / name)[0], valid) for name in members}
    expected = sum(weights[name] * parts[name] for name in members)
    assert np.allclose(checkpoint.predict_proba(loaded, valid), expected, atol=1e-5)


def test_warm_start_copies_the_trunk_and_head_rows_by_class_name(tiny, tmp_path):
    """The model starts from a trained one's weights: trunk as it is, each head's rows matched by
    class name (a class the source never saw keeps its fresh rows), standardizers its own; then
    it trains ``warm_epochs``, and a probe's L-BFGS starting there converges to the same optimum."""
    store, table = tiny
    levels = ("fold", "superfamily")
    config = trainer.TrainConfig(model=registry.ModelConfig(name="layers", levels=levels), max_epochs=2, warm_epochs=1,
                                 batch_size=4, progress=False)
    dropped = table["superfamily"].iloc[0]  # the source never sees this superfamily (nor its rows)
    source = trainer.train(store, table[table["superfamily"] != dropped], tmp_path / "source", config)
    before, meta = checkpoint.load_model(source)
    train_rows = table[table["split"] == "train"]
    classes = sorted(train_rows["fold"].unique())
    level_classes = {"superfamily": sorted(train_rows["superfamily"].unique())}
    fresh = trainer.build_classifier(config.model, {"fold": len(classes), "superfamily": len(level_classes["superfamily"])},
                                     checkpoint.load_split(store, train_rows, classes))
    untouched = {k: v.clone() for k, v in fresh.state_dict().items()}
    trainer.warm_start(fresh, classes, level_classes, source)
    after = fresh.state_dict()
    assert torch.equal(after["trunk.1.weight"], before.state_dict()["trunk.1.weight"])
    assert torch.equal(after["layers_norm.mean"], untouched["layers_norm.mean"])  # its own standardizer
    for name in level_classes["superfamily"]:
        row = level_classes["superfamily"].index(name)
        if name == dropped:
            assert torch.equal(after["heads.superfamily.weight"][row], untouched["heads.superfamily.weight"][row])
        else:
            theirs = meta["level_classes"]["superfamily"].index(name)
            assert torch.equal(after["heads.superfamily.weight"][row], before.state_dict()["heads.superfamily.weight"][theirs])
    for name in classes:
        if name in meta["classes"]:
            assert torch.equal(after["heads.fold.bias"][classes.index(name)],
                               before.state_dict()["heads.fold.bias"][meta["classes"].index(name)])
    warm = trainer.train(store, table, tmp_path / "warm", config, init_from=source)
    warm_meta = json.loads((warm / "model.json").read_text())
    assert warm_meta["epochs"] == 1 and warm_meta["warm_start"] == str(source)
    with pytest.raises(CoevofoldError, match="same architecture"):
        trainer.warm_start(trainer.build_classifier(registry.ModelConfig(name="probe"), len(classes),
                                                    checkpoint.load_split(store, train_rows, classes)),
                           classes, {}, source)
    probe = trainer.TrainConfig(model=registry.ModelConfig(name="probe"), solver="lbfgs", progress=False)
    cold = trainer.train(store, table[table["superfamily"] != dropped], tmp_path / "p0", probe)
    both = [checkpoint.load_model(trainer.train(store, table, tmp_path / name, probe, init_from=init))[0]
            for name, init in (("p1", None), ("p2", cold))]
    valid = checkpoint.load_split(store, table[table["split"] == "valid"], classes)
    assert np.allclose(*(checkpoint.predict_proba(m, valid) for m in both), atol=2e-3)


def test_ensemble_resumes_finished_members_and_retrains_another_recipe(tiny, tmp_path, monkeypatch):
    store, table = tiny
    mlp = trainer.TrainConfig(model=registry.ModelConfig(name="layers"), max_epochs=1, progress=False)
    out = mixture.train_ensemble(store, table, tmp_path / "e", {"mlp": mlp})
    trained = []
    real = mixture.train
    monkeypatch.setattr(mixture, "train", lambda *a, **k: trained.append(a[3]) or real(*a, **k))
    mixture.train_ensemble(store, table, out, {"mlp": dataclasses.replace(mlp, progress=True, threads=1)})
    assert trained == []  # progress and threads do not change the model: reused
    mixture.train_ensemble(store, table, out, {"mlp": dataclasses.replace(mlp, lr=1e-4)})
    assert [c.lr for c in trained] == [1e-4]  # another recipe: trained afresh
    mixture.train_ensemble(store, table, tmp_path / "w", {"mlp": dataclasses.replace(mlp, lr=1e-4)}, warm_from=out)
    assert len(trained) == 2  # warm-started from out's member
    assert json.loads((tmp_path / "w" / "members" / "mlp" / "model.json").read_text())["warm_start"].endswith("members/mlp")


def test_trained_as_compares_recipe_and_features_not_progress(tmp_path):
    members = recipe.default_members(progress=False)
    folder = tmp_path / "m"
    folder.mkdir()
    assert not mixture.trained_as(folder, members, {"grid": 32})
    meta = {"feature_settings": {"grid": 32}, "ensemble": {"members": {
        name: json.loads(json.dumps(dataclasses.asdict(config))) for name, config in members.items()}}}
    (folder / checkpoint.MODEL_META).write_text(json.dumps(meta))
    assert mixture.trained_as(folder, recipe.default_members(progress=True), {"grid": 32})
    elsewhere = {n: dataclasses.replace(c, device="auto", threads=1) for n, c in members.items()}
    assert mixture.trained_as(folder, elsewhere, {"grid": 32})  # where it ran does not change the model
    assert not mixture.trained_as(folder, members, {"grid": 16})
    other = {**members, "mlp": dataclasses.replace(members["mlp"], seed=1)}
    assert not mixture.trained_as(folder, other, {"grid": 32})


def test_plm_label_of_an_older_store_is_marked(tiny, tmp_path):
    """A store written before labels recorded only the name asked for: model.json says so, with the weights."""
    import shutil

    import h5py

    store, _ = tiny
    assert trainer.plm_label(store).startswith("offline copy ")
    old = shutil.copy(store, tmp_path / "old.h5")
    with h5py.File(old, "r+") as f:
        f.attrs["model"] = "facebook/esm2_t6_8M_UR50D"
        sha = json.loads(f.attrs["settings"])["weights_sha256"]
    assert trainer.plm_label(old) == f"facebook/esm2_t6_8M_UR50D (as an older store named it), sha256 {sha}"


def test_steps_say_which_step_the_total_so_far_and_the_eta(capsys, monkeypatch):
    clock = iter([0.0, 0.0, 0.0, 65.0, 65.0, 65.0, 65.0, 200.0, 200.0])  # start; per step: so far, began, end, total
    monkeypatch.setattr(runs.time, "perf_counter", lambda: next(clock))
    steps = runs.Steps("job", {"first": 1.0, "second": 2.5})
    with steps.step("first"):
        pass
    with steps.step("second"):
        pass
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[job 1/2] first: so far 0:00; first run ~1 min for this step, ~4 min to the end")
    assert lines[1] == "[job 1/2] first: 1:05 (total 1:05)"
    assert lines[2].startswith("[job 2/2] second: so far 1:05; first run ~2 min for this step, ~2 min to the end")
    assert lines[3] == "[job 2/2] second: 2:15 (total 3:20)"
