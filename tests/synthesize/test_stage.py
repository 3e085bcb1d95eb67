import json

import numpy as np
import pytest
from synth_toys import toy_pair

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.checkpoint import file_sha256
from diff4mmlits.cli import main
from diff4mmlits.config import apply_overrides, resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.native import read_case_folder
from diff4mmlits.errors import InputError
from diff4mmlits.ingest import describe_case
from diff4mmlits.pipeline import write_run_report
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.segment.stage import read_offline_synthetic
from diff4mmlits.synthesize.painters import load_painter
from diff4mmlits.synthesize.stage import stage_synthesize, stage_train_autoencoder, stage_train_synthesizer
from finished_stages import mark_finished, put_case, write_manifest


def inpainted_run(root) -> RunFolder:
    """A smoke run folder with registered/ and normal/ cases (what the register and inpaint stages write)."""
    run = RunFolder(root)
    run.root.mkdir(parents=True)
    config = resolve_config("smoke")
    run.save_config(config)
    reals = []
    for seed in range(4):
        real, normal = toy_pair(seed, phases=("NC", "AP", "PVP", "DP") if seed else ("AP", "PVP"))
        put_case(run, "registered", real)
        put_case(run, "normal", normal)
        reals.append(real)
    ids = [case.case_id for case in reals]
    write_manifest(run, reals, train=ids[:3], validation=ids[3:], test=[])
    mark_finished(run, config, "register", "train-inpainter", "inpaint")
    return run


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> RunFolder:
    """One inpainted run folder that the tests of this module train into (each test trains what it reads)."""
    return inpainted_run(tmp_path_factory.mktemp("synth") / "run")


def provenance_edge_keys(run: RunFolder) -> set[str]:
    """The keys of the edge fractions the painted tumors of ``run`` were drawn with."""
    keys: set[str] = set()
    for path in run.synthetic_dir.glob("*/provenance.json"):
        for tumor in json.loads(path.read_text())["tumors"]:
            keys |= set(tumor.get("edge_fraction") or {})
    return keys


def test_synthesize_needs_trained_models(tmp_path):
    run = inpainted_run(tmp_path / "run")
    with pytest.raises(InputError, match="train-synthesizer"):
        stage_synthesize(run, run.load_config())


def test_the_three_stages_write_models_synthetic_cases_and_provenance(run_folder):
    config = run_folder.load_config()
    metrics = stage_train_autoencoder(run_folder, config)
    assert metrics["held_out"] is True
    stage_train_synthesizer(run_folder, config)
    mark_finished(run_folder, config, "train-autoencoder", "train-synthesizer")
    summary = stage_synthesize(run_folder, apply_overrides(config, ["synthesize.per_case=2"]))
    folders = sorted(p.name for p in run_folder.synthetic_dir.iterdir() if p.is_dir())
    assert folders == [f"toy{i}_s{k:03d}" for i in range(3) for k in range(2)]
    assert summary["cases"] == 6 and set(summary["contrast_hu"]["real"]) == {"NC", "AP", "PVP", "DP"}
    assert summary["edge_fraction"]["real"]["count"] >= 1  # the edge the real tumors show, beside the painted ones'
    assert provenance_edge_keys(run_folder) == {"edge", "outside"}  # painted tumors drew a real tumor's edge
    case = read_case_folder(run_folder.synthetic_dir / "toy0_s001")
    assert case.phase_names == ["AP", "PVP"]  # the phases the normal case has
    assert (case.label.array == LABEL_TUMOR).any()
    provenance = json.loads((run_folder.synthetic_dir / "toy0_s001" / "provenance.json").read_text())
    assert provenance["seed"] == [config.seed, 0, 1] and provenance["mode"] == "profile"
    assert provenance["models"]["diffusion-profile"] == file_sha256(run_folder.model_dir("diffusion-profile") / "weights.safetensors")
    assert {"size_class", "semi_axes_mm", "centre_vox", "elastic_seed", "noise_seed"} <= set(provenance["tumors"][0])
    assert list(run_folder.figures_dir.glob("synthesis_*.png"))
    write_run_report(run_folder, config)
    assert "Synthesis" in (run_folder.report_dir / "index.html").read_text()

    # the same seed gives the same files
    before = read_case_folder(run_folder.synthetic_dir / "toy1_s000")
    stage_synthesize(run_folder, apply_overrides(config, ["synthesize.per_case=1"]))
    after = read_case_folder(run_folder.synthetic_dir / "toy1_s000")
    assert all(np.array_equal(before.phases[p].array, after.phases[p].array) for p in before.phase_names)
    assert not (run_folder.synthetic_dir / "toy1_s001").exists()


def test_healthy_scans_are_painted_into_after_the_training_cases(tmp_path):
    run = inpainted_run(tmp_path / "run")
    normal = toy_pair(9)[1]  # tumor-free, liver label only: a healthy scan (data.healthy_cases)
    healthy = Case("healthy_0", normal.phases, normal.label)
    put_case(run, "registered", healthy)
    put_case(run, "normal", healthy)
    manifest = run.load_manifest()
    manifest["cases"].append(describe_case(healthy))
    manifest["split"]["healthy"] = ["healthy_0"]
    run.save_manifest(manifest)
    config = apply_overrides(run.load_config(), ["synthesize.method=handcrafted"])
    assert stage_synthesize(run, config)["healthy_scans"] == 1
    folders = sorted(p.name for p in run.synthetic_dir.iterdir() if p.is_dir())
    assert folders == ["healthy_0_s000", "toy0_s000", "toy1_s000", "toy2_s000"]
    provenance = json.loads((run.synthetic_dir / "healthy_0_s000" / "provenance.json").read_text())
    assert provenance["normal_case"] == "healthy_0" and provenance["seed"] == [config.seed, 3, 0]
    # the training cases keep the seeds they have without healthy scans
    assert json.loads((run.synthetic_dir / "toy2_s000" / "provenance.json").read_text())["seed"] == [config.seed, 2, 0]
    assert (read_case_folder(run.synthetic_dir / "healthy_0_s000").label.array == LABEL_TUMOR).any()
    # the segmenter trains on every one of them; the validation case's normal CT is never painted
    assert sorted(c.case_id for c in read_offline_synthetic(run)) == folders


def test_cli_commands(tmp_path, capsys):
    run = inpainted_run(tmp_path / "run")
    root = str(run.root)
    assert main(["synthesize", "--run", root, "--method", "handcrafted", "--per-case", "1"]) == 0
    provenance = json.loads((run.synthetic_dir / "toy2_s000" / "provenance.json").read_text())
    assert provenance["method"] == "handcrafted"
    assert main(["synthesize", "--run", root, "--mode", "joint"]) == 2
    assert "train-autoencoder" in capsys.readouterr().err  # the diffusion painter needs its models first
    assert main(["synthesize", "--run", root, "--method", "gan"]) == 2
    assert main(["synthesize", "--run", root, "--method", "handcrafted", "--profile", "AP=forty"]) == 2
    assert "PHASE=HU" in capsys.readouterr().err
    assert main(["synthesize", "--run", root, "--method", "handcrafted", "--per-case", "1", "--profile", "nc=-10,AP=60,PVP=-5,DP=-25"]) == 0
    provenance = json.loads((run.synthetic_dir / "toy2_s000" / "provenance.json").read_text())
    assert provenance["tumors"][0]["contrast_hu"] == {"NC": -10.0, "AP": 60.0, "PVP": -5.0, "DP": -25.0}
    assert main(["train-autoencoder", "--run", root]) == 0
    assert main(["train-synthesizer", "--run", root, "--mode", "joint", "--set", "diffusion.steps=2"]) == 0
    assert run.read_stamp("train-autoencoder") is not None and run.read_stamp("train-synthesizer") is not None
    painter = load_painter(run, "ldm", "joint")
    normal = run.read_case("normal", "toy3")
    assert (painter.paint(normal, np.random.default_rng(0)).label.array == LABEL_TUMOR).any()
