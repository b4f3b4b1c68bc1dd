import importlib.util

import pytest

from contrastkit.app import extras


def test_nothing_missing_when_the_extra_is_installed():
    assert extras.missing_app_packages() == []
    extras.check_app_extra()


def test_a_missing_package_is_named_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in ("matplotlib", "PIL") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert extras.missing_app_packages() == ["matplotlib", "pillow"]
    with pytest.raises(extras.MissingExtraError) as info:
        extras.check_app_extra()
    message = str(info.value)
    assert "matplotlib, pillow" in message
    assert "are not installed" in message
    assert "pip install 'contrastkit[app]'" in message
    assert "\n" not in message
