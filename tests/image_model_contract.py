"""The contract every image-model backend passes: one test class, reused by each backend's tests.

How to use it::

    import pytest
    from tests.image_model_contract import ImageModelContract

    class TestMyBackend(ImageModelContract):
        @pytest.fixture
        def model(self):                  # the backend under test (may be module- or session-scoped)
            return MyImageModel(...)

        # Optional knobs (class attributes), shown with their defaults:
        params = {}               # parameters that keep every call cheap, e.g. {"steps": 3}
        size = (24, 16)           # a (width, height) the backend can draw, other than its default

The contract is the one in :mod:`plait.image_model`: a prompt (string, prompt value, message) or a
dict of parameters in, an ``ImageResult`` out; ``stream`` yields progress events and then the
result; the same seed gives the same image for the same call; bad input is a clear error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from plait.image_model import ImageModel
from plait.messages import AssistantMessage, ImageResult, ProgressEvent, StringPromptValue
from plait.runnable import Lambda, Runnable


def pixels(result: ImageResult, i: int = 0) -> np.ndarray:
    return np.asarray(result.images[i].convert("RGB"), dtype=np.int16)


class ImageModelContract:
    """Subclass it and provide a ``model`` fixture; see the module docstring."""

    params: dict[str, Any] = {}
    size: tuple[int, int] = (24, 16)
    prompt = "a red circle on the left"

    @pytest.fixture
    def model(self) -> ImageModel:
        raise NotImplementedError("a backend's test class must define the 'model' fixture")

    def call(self, model: ImageModel, **params: Any) -> ImageResult:
        return model.invoke({"prompt": self.prompt, **self.params, **params})

    # --- the interface ---------------------------------------------------------------------------
    def test_declares_the_image_model_interface(self, model: ImageModel) -> None:
        assert isinstance(model, ImageModel) and isinstance(model, Runnable)
        assert isinstance(model.model_name, str) and model.model_name
        assert model.warm_up() is None
        model.warm_up()  # twice is fine
        assert isinstance(self.call(model, seed=0), ImageResult)

    def test_a_prompt_gives_one_image_and_the_parameters_used(self, model: ImageModel) -> None:
        result = self.call(model, seed=1)
        assert isinstance(result, ImageResult) and isinstance(result.model, str) and result.model
        (image,) = result.images
        assert image.size[0] > 0 and image.size[1] > 0 and image.mode in ("RGB", "RGBA", "L")
        assert result.parameters["prompt"] == self.prompt and result.parameters["seed"] == 1
        plain = model.invoke(self.prompt, **self.params)  # a bare string is a prompt too
        assert plain.parameters["prompt"] == self.prompt and len(plain.images) == 1

    def test_every_prompt_form_gives_the_same_image(self, model: ImageModel) -> None:
        expected = pixels(self.call(model, seed=2))
        for form in (StringPromptValue(text=self.prompt), AssistantMessage(content=self.prompt)):
            result = model.invoke(form, seed=2, **self.params)
            assert result.parameters["prompt"] == self.prompt
            assert np.array_equal(pixels(result), expected), form

    def test_size_and_number_of_images(self, model: ImageModel) -> None:
        width, height = self.size
        result = self.call(model, width=width, height=height, num_images=2, seed=5)
        assert [im.size for im in result.images] == [(width, height)] * 2
        assert result.parameters["num_images"] == 2 and result.parameters["seed"] == 5
        assert not np.array_equal(pixels(result, 0), pixels(result, 1)), "two images of one call must differ"

    def test_same_seed_same_image_other_seed_another(self, model: ImageModel) -> None:
        a, b, c = self.call(model, seed=7), self.call(model, seed=7), self.call(model, seed=8)
        assert np.array_equal(pixels(a), pixels(b))
        assert not np.array_equal(pixels(a), pixels(c))

    def test_keyword_parameters_are_parameters(self, model: ImageModel) -> None:
        by_keyword = model.invoke(self.prompt, seed=3, **self.params)
        assert by_keyword.parameters["seed"] == 3
        assert np.array_equal(pixels(by_keyword), pixels(self.call(model, seed=3)))
        assert model.bind(seed=3, **self.params).invoke(self.prompt).parameters["seed"] == 3
        with pytest.raises(ValueError, match="seed=4 contradicts seed=3"):
            model.invoke({"prompt": self.prompt, "seed": 3}, seed=4)

    # --- streaming, async, batch -----------------------------------------------------------------
    def test_stream_yields_progress_then_the_result(self, model: ImageModel) -> None:
        items = list(model.stream({"prompt": self.prompt, "seed": 4, **self.params}))
        *events, last = items
        assert isinstance(last, ImageResult), [type(i).__name__ for i in items]
        assert all(isinstance(e, ProgressEvent) for e in events)
        if events:
            assert [e.step for e in events] == list(range(1, len(events) + 1))
            assert {e.total for e in events} == {events[-1].step}
        assert np.array_equal(pixels(last), pixels(self.call(model, seed=4)))

    async def test_async_matches_sync(self, model: ImageModel) -> None:
        expected = pixels(self.call(model, seed=6))
        result = await model.ainvoke({"prompt": self.prompt, "seed": 6, **self.params})
        assert np.array_equal(pixels(result), expected)
        items = [i async for i in model.astream({"prompt": self.prompt, "seed": 6, **self.params})]
        assert isinstance(items[-1], ImageResult) and np.array_equal(pixels(items[-1]), expected)
        assert all(isinstance(i, ProgressEvent) for i in items[:-1])

    def test_batch_keeps_order(self, model: ImageModel) -> None:
        inputs = [{"prompt": p, "seed": s, **self.params} for p, s in [("a blue square", 1), (self.prompt, 2)]]
        results = model.batch(inputs)
        assert [(r.parameters["prompt"], r.parameters["seed"]) for r in results] == [("a blue square", 1),
                                                                                     (self.prompt, 2)]

    def test_in_a_chain_after_a_prompt_step(self, model: ImageModel) -> None:
        chain = Lambda(lambda shape: f"a red {shape} on the left") | model.bind(**self.params)
        assert chain.invoke("circle").parameters["prompt"] == "a red circle on the left"

    # --- errors ----------------------------------------------------------------------------------
    @pytest.mark.parametrize(("params", "message"), [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"prompt": "x", "num_images": 0}, "num_images"),
        ({"seed": 1}, "prompt"),
    ])
    def test_bad_parameters_say_what_is_wrong(self, model: ImageModel, params: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            model.invoke(params)

    def test_other_inputs_are_a_type_error(self, model: ImageModel) -> None:
        with pytest.raises(TypeError, match="takes a prompt string"):
            model.invoke(42)
