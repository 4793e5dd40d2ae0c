"""One root for every error of ours (studio.errors.StudioError), unique names, and the UI showing a bug as an
internal error (logged with its traceback) instead of as a readable message."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re

import gradio as gr
import pytest

from studio.errors import StudioError

PACKAGES = ("contracts", "metadata", "evolve", "studio")


def _our_exception_classes() -> list[type[BaseException]]:
    """Every public exception class defined in our packages (modules imported as the studio does)."""
    classes: dict[str, type[BaseException]] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for module_info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            name = module_info.name
            if name.endswith("__main__") or ".migrations" in name:
                continue  # command lines and Alembic scripts: nothing defined there
            module = importlib.import_module(name)
            for value in vars(module).values():
                if (
                    inspect.isclass(value)
                    and issubclass(value, BaseException)
                    and value.__module__ == name
                    and not value.__name__.startswith("_")
                ):
                    classes[f"{name}.{value.__qualname__}"] = value
    return list(classes.values())


def test_every_error_of_ours_derives_from_studio_error_and_has_a_unique_name():
    classes = _our_exception_classes()
    names = [cls.__name__ for cls in classes]

    assert len(classes) > 40  # the walk found the layers' errors
    assert [f"{cls.__module__}.{cls.__name__}" for cls in classes if not issubclass(cls, StudioError)] == []
    assert sorted({name for name in names if names.count(name) > 1}) == []


def test_each_layer_keeps_its_own_base_under_the_root():
    from contracts.errors import ChainError, UnstorableCIDError
    from evolve.errors import EvolveError, FeedError
    from metadata.errors import ContentError, InvalidCIDError
    from studio.generation.errors import GenerationError, InvalidRequestError
    from studio.services.errors import InvalidInputError, NotFoundError

    for base in (ChainError, ContentError, GenerationError, EvolveError, InvalidInputError, NotFoundError):
        assert issubclass(base, StudioError)
    assert issubclass(UnstorableCIDError, ChainError)
    assert not issubclass(UnstorableCIDError, ContentError)
    assert issubclass(InvalidCIDError, ContentError)
    assert not issubclass(InvalidCIDError, ChainError)
    assert issubclass(FeedError, EvolveError)
    assert issubclass(InvalidRequestError, GenerationError)


def test_the_ui_shows_a_studio_error_as_its_message():
    from metadata.errors import InvalidCIDError
    from studio.ui.common import readable_errors

    @readable_errors
    def handler() -> None:
        raise InvalidCIDError("'xyz' is not a CID: paste the bafy... string")

    with pytest.raises(gr.Error) as raised:
        handler()
    assert raised.value.message == "'xyz' is not a CID: paste the bafy... string"


@pytest.mark.parametrize("bug", [ValueError("invalid literal for int() with base 10: 'x'"), KeyError("steps")])
def test_the_ui_shows_a_bug_as_an_internal_error_and_logs_its_traceback(bug, caplog):
    from studio.ui.common import readable_errors

    @readable_errors
    def handler() -> None:
        raise bug

    @readable_errors
    def streaming():
        yield 1
        raise bug

    for call in (handler, lambda: list(streaming())):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="studio.ui"), pytest.raises(gr.Error) as raised:
            call()
        message = raised.value.message
        found = re.search(r"see the studio's log \(id ([0-9a-f]{8})\)", message)

        assert message.startswith("Internal error")
        assert found is not None
        assert str(bug) not in message
        [record] = caplog.records
        assert found.group(1) in record.getMessage()
        assert record.exc_info is not None
        assert record.exc_info[1] is bug
