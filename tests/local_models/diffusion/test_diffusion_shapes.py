"""plait's own shapes model: the scene generator, the checker, the shipped weights, the trainer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from plait.local_models.diffusion.shapes_checker import check, read, score_many
from plait.local_models.diffusion.shapes_data import (
    HELD_OUT_PAIRS,
    all_captions,
    benchmark_scenes,
    parse_caption,
    render,
    sample_scenes,
)


def test_scenes_are_deterministic_per_seed() -> None:
    a, b, c = sample_scenes(20, seed=3), sample_scenes(20, seed=3), sample_scenes(20, seed=4)
    assert a == b and a != c
    assert np.array_equal(render(a), render(b))
    assert render(a).shape == (20, 32, 32, 3) and render(a).dtype == np.uint8
    assert render(sample_scenes(2, seed=0, size=48), size=48).shape == (2, 48, 48, 3)


def test_held_out_pairs_never_reach_training() -> None:
    train = sample_scenes(3000, seed=0, split="train")
    assert not any((s.colour, s.shape) in HELD_OUT_PAIRS for s in train)
    unseen = sample_scenes(200, seed=0, split="unseen")
    assert all((s.colour, s.shape) in HELD_OUT_PAIRS for s in unseen)
    bench = benchmark_scenes(200)
    assert sum(s.unseen for s in bench) == 100
    with pytest.raises(ValueError, match="split"):
        sample_scenes(1, seed=0, split="test")


def test_every_caption_parses_back() -> None:
    captions = all_captions()
    assert len(captions) == len(set(captions)) > 400
    for scene in sample_scenes(300, seed=1, split="any"):
        parts = parse_caption(scene.caption)
        assert (parts.colour, parts.shape, parts.position) == (scene.colour, scene.shape, scene.position)
        assert parts.size in (None, scene.size)
    assert parse_caption("Two big violet boxes in the middle!") == parse_caption("a large purple square in the center")


def test_checker_scores_the_generators_own_images_perfectly() -> None:
    scenes = sample_scenes(600, seed=7, split="any")
    images = render(scenes)
    scores = score_many(list(images), [s.caption for s in scenes])
    assert scores == {"color_acc": 1.0, "shape_acc": 1.0, "position_acc": 1.0, "size_acc": 1.0, "all_acc": 1.0}
    # and at another size, from PIL images
    from PIL import Image

    big = sample_scenes(50, seed=8, size=64)
    assert score_many([Image.fromarray(x) for x in render(big, 64)], [s.caption for s in big])["all_acc"] == 1.0


def test_checker_says_no_when_the_image_is_wrong() -> None:
    scene = next(s for s in sample_scenes(50, seed=2) if s.colour == "green" and s.position != "right")
    image = render([scene])[0]
    wrong = check(image, f"a blue {scene.shape} on the right")
    assert not wrong.colour_ok and not wrong.position_ok and wrong.shape_ok
    blank = np.full((32, 32, 3), 128, dtype=np.uint8)
    assert read(blank).colour is None and not check(blank, "a red circle").all_ok
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert not check(noise, "a red circle on the left").all_ok
    with pytest.raises(ValueError, match="RGB"):
        read(np.zeros((32, 32)))


# --- the shipped model -------------------------------------------------------------------------
WEIGHTS = Path(__file__).resolve().parents[3] / "plait" / "local_models" / "diffusion" / "weights" / "plait-shapes"


def test_shipped_weights_are_small_safetensors_without_the_text_encoder() -> None:
    from plait.defaults import image_model_path

    assert Path(image_model_path()).resolve() == WEIGHTS
    files = [p for p in WEIGHTS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    index = json.loads((WEIGHTS / "model_index.json").read_text())
    assert index["_class_name"] == "PlaitShapesPipeline" and index["text_encoder"] == [None, None]


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine two spinning OpenMP threads run many times slower."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.integration
def test_embedded_model_draws_what_the_caption_says(one_thread) -> None:
    pytest.importorskip("diffusers")
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    captions = ["a large red circle on the left", "a small blue square at the top", "a green triangle at the bottom",
                "a yellow circle in the center", "a large purple square on the right", "a cyan triangle at the top"]
    model = DiffusersImageModel(device="cpu")
    results = model.batch([{"prompt": c, "seed": i} for i, c in enumerate(captions)])
    images = [r.images[0] for r in results]
    assert all(img.size == (32, 32) for img in images)
    scores = score_many(images, captions)
    # ~99-100% of 200 held-out captions are right on each (benchmarks/diffusion.py); six may miss one
    assert scores["color_acc"] >= 5 / 6 and scores["shape_acc"] >= 5 / 6 and scores["position_acc"] >= 5 / 6, scores
    # the same call again (same seed, shape and thread count): the same bits
    alone = np.asarray(model.invoke({"prompt": captions[0], "seed": 0}).images[0])
    assert np.array_equal(np.asarray(model.invoke({"prompt": captions[0], "seed": 0}).images[0]), alone)
    # alone rather than in the batch: the same image up to float rounding (kernels block sums by batch size;
    # measured at most 1 level on at most 2 of 1024 pixels), while another seed changes every pixel
    levels, pixels = _levels_apart(alone, images[0])
    assert levels <= 2 and pixels <= 10, (levels, pixels)
    levels, pixels = _levels_apart(np.asarray(model.invoke({"prompt": captions[0], "seed": 1}).images[0]), alone)
    assert levels > 10 and pixels > 500, (levels, pixels)


def _levels_apart(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(largest difference of a channel in 0..255 levels, number of pixels that differ at all)."""
    diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int))
    return int(diff.max()), int(diff.any(axis=-1).sum())


def test_training_script_runs_and_saves_a_loadable_pipeline(tmp_path: Path, one_thread) -> None:
    pytest.importorskip("diffusers")
    from plait.local_models.diffusion import train_shapes

    cache = tmp_path / "captions.safetensors"
    out = tmp_path / "model"
    train_shapes.main(["--out", str(out), "--steps", "2", "--batch", "4", "--channels", "8,16", "--heads", "2",
                       "--size", "16", "--patch", "2", "--caption-cache", str(cache), "--log-every", "1"])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["config"]["seed"] == 0 and log[-1]["done_steps"] == 2
    assert cache.exists()  # the next run reuses the encoded captions
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    result = DiffusersImageModel(str(out), device="cpu", steps=2).invoke({"prompt": "a red circle", "seed": 0})
    assert result.images[0].size == (16, 16)
    saved = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    # an epsilon model: DDIM/DDPM swapped in clip x0, and Euler ancestral skips the t=999 blow-up
    assert saved["prediction_type"] == "epsilon" and saved["clip_sample"] is True and saved["clip_sample_range"] == 2.0
    assert saved["timestep_spacing"] == "leading"


def test_default_eval_samplers_start_with_the_saved_one_and_skip_t999_for_epsilon_models() -> None:
    from plait.local_models.diffusion.train_shapes import SAMPLERS, default_samplers

    eps, v = default_samplers("epsilon"), default_samplers("v_prediction")
    assert eps[0] == "euler_a-leading-25" and v[0] == "euler_a-trailing-25"
    assert not [n for n in eps if "trailing" in n] and "ddim-leading-25" in eps and "ddpm-1000" in eps
    assert sorted(v) == sorted(SAMPLERS) and len(set(eps)) == len(eps)


@pytest.mark.parametrize("name", ["ddim", "ddpm", "dpm++", "euler"])
def test_schedulers_swapped_into_the_embedded_model_keep_its_training_schedule(name: str) -> None:
    pytest.importorskip("diffusers")
    import diffusers

    from plait.defaults import image_model_path
    from plait.local_models.diffusion.diffusers_image import make_scheduler

    base = diffusers.EulerAncestralDiscreteScheduler.from_pretrained(image_model_path(), subfolder="scheduler")
    swapped = make_scheduler(name, base.config)
    # an epsilon model: x0 clipped (the first of 1000 DDPM steps has sigma 20,291), no t=999 start
    assert swapped.config.clip_sample is True and swapped.config.clip_sample_range == 2.0
    assert swapped.config.prediction_type == "epsilon"
    assert swapped.config.timestep_spacing == "leading"
    assert swapped.config.beta_schedule == "squaredcos_cap_v2"


def test_text_to_image_example_streams_tokens_then_progress(tmp_path: Path, one_thread, capsys) -> None:
    pytest.importorskip("diffusers")
    from examples.text_to_image import run, to_caption
    from plait.fake import FakeChatModel
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    # the LLM's words where they fit the vocabulary, the user's own words win, gaps get defaults
    assert to_caption({"request": "a big blue thing", "rewrite": "a small blue square at the top"}) == \
        "a large blue square at the top"
    assert to_caption({"request": "hello", "rewrite": "I cannot draw"}) == "a red circle in the center"
    llm = FakeChatModel(["a small blue square at the top"])
    result = asyncio.run(run("draw a blue box at the top", str(tmp_path / "out.png"), model=llm,
                             image_model=DiffusersImageModel(device="cpu", steps=3)))
    out = capsys.readouterr().out
    assert out.index("square") < out.index("drawing: step 1/3") < out.index("step 3/3")
    assert result.parameters["prompt"] == "a small blue square at the top"
    assert (tmp_path / "out.png").exists()
