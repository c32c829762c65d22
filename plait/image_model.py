"""The image-model interface: a prompt (or a dict of parameters) in, images out.

Contract: a backend subclasses :class:`ImageModel` and implements ``invoke(input, **parameters)``
returning an :class:`~plait.messages.ImageResult`. Where it reports progress it also implements
``stream``. Everything else (``ainvoke``, ``astream``, ``batch``) has the Runnable default.

- Input: a prompt string, a prompt value, a message (its text: a chat model's reply can feed an
  image model), or a dict with ``prompt`` and any of the common parameters ``num_images``,
  ``width``, ``height``, ``seed``, ``negative_prompt``, ``steps``, ``guidance_scale`` (a backend
  may take more: ``scheduler``, ``size``, ``quality``...). Keyword arguments to ``invoke`` are
  parameters too (``.bind(steps=10)`` sets defaults); :meth:`ImageModel.parameters` merges both,
  and a parameter given both ways with different values is an error.
- An unknown parameter, an empty prompt or a bad value is a ``ValueError`` naming it; an input
  of another type is a ``TypeError``. Nothing is dropped or fixed silently.
- Output: an ``ImageResult`` with ``num_images`` PIL images (of ``width`` x ``height`` where given),
  every parameter used in ``parameters`` (the seed included where the backend takes seeds, so each
  image can be made again) and the model id in ``model``.
- ``stream`` yields zero or more :class:`~plait.messages.ProgressEvent` (``step`` counting up to
  ``total``) and then exactly one ``ImageResult``, the one ``invoke`` gives for the same input.
- The same seed and parameters give the same image, where the backend takes seeds.
- Constructors are cheap; ``warm_up()`` loads what the first call would (weights, the client).

``model_name`` is the id a server lists the model under. Backends:
:class:`plait.local_models.diffusion.diffusers_image.DiffusersImageModel` (diffusers pipelines and
the bundled plait-shapes model) and :class:`plait.remote.openai_images.OpenAIImageModel`.

Example::

    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel
    model = DiffusersImageModel(steps=10)              # the bundled plait-shapes model
    result = model.invoke({"prompt": "a red circle on the left", "seed": 0})
    for event in model.stream("a blue square at the top"):
        print(event)                                   # ProgressEvent(step=1, total=10) ... ImageResult
"""

from __future__ import annotations

from typing import Any

from plait.messages import ChatPromptValue, ImageResult, Message, StringPromptValue
from plait.runnable import Runnable


def prompt_text(input: Any) -> str:
    """The prompt in a string, a prompt value or a message; TypeError for anything else."""
    if isinstance(input, str):
        return input
    if isinstance(input, (StringPromptValue, ChatPromptValue)):
        return input.to_string()
    if isinstance(input, Message):
        return input.content
    raise TypeError(f"An image model takes a prompt string, a prompt value, a message or a dict of parameters, "
                    f"not {type(input).__name__}")


class ImageModel(Runnable[Any, ImageResult]):
    """Base class of image models. See the module docstring for the contract."""

    #: The model id (``model=`` in requests to a server that serves it).
    model_name: str = "image-model"

    def parameters(self, input: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        """The call's parameters as one dict: the input's (a prompt, or a dict) and the keyword ones.

        Checks what every backend needs (a prompt that says something, no parameter given twice
        with two values); each backend then checks the parameters it knows.
        """
        given = dict(input) if isinstance(input, dict) else {"prompt": prompt_text(input)}
        for key, value in overrides.items():
            if key in given and given[key] != value:
                raise ValueError(f"{key}={value!r} contradicts {key}={given[key]!r} in the input; give it once")
            given[key] = value
        prompt = given.get("prompt")
        if prompt is None:
            raise ValueError("The prompt is missing: give the image's description as 'prompt'")
        if not isinstance(prompt, str):
            raise ValueError(f"The prompt must be a string, not {type(prompt).__name__}")
        if not prompt.strip():
            raise ValueError("The prompt is empty: describe the image to draw, e.g. 'a red circle on the left'")
        return given

    def invoke(self, input: Any, **parameters: Any) -> ImageResult:
        raise NotImplementedError(f"{type(self).__name__} must implement invoke()")
