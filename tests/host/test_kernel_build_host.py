"""third_party/linux/build.py's choices that need no kernel build and no network.

Which linux-source it picks (Debian's indexes are replaced by a stand-in),
which series goes with it, that the 7.2 cache keys are hashed as they always
were, and which cached trees a build prunes.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

LINUX = Path(__file__).resolve().parents[2] / "third_party" / "linux"


def _load_build():
    spec = importlib.util.spec_from_file_location("bpfoom_kernel_build", LINUX / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return sys.modules[spec.name]


build = _load_build()


class FakeDebian:
    """What Debian's suites offer: {suite: {package: [versions]}}; or unreachable."""

    def __init__(self, offers: dict[str, dict[str, list[str]]], reachable: bool = True):
        self.offers = offers
        self.reachable = reachable
        self.asked: list[tuple[str, str]] = []

    def _suite(self, suite: str) -> dict[str, list[str]]:
        if not self.reachable:
            raise build.debian.FetchError("network is unreachable")
        return self.offers.get(suite, {})

    def package_names(self, prefix: str, suite: str = "unstable") -> list[str]:
        self.asked.append(("names", suite))
        return sorted(name for name in self._suite(suite) if name.startswith(prefix))

    def versions(self, package: str, suite: str = "unstable", source: bool = False) -> list[str]:
        self.asked.append((package, suite))
        return list(self._suite(suite).get(package, []))


@pytest.fixture
def debian(monkeypatch):
    def install(offers, reachable=True):
        fake = FakeDebian(offers, reachable)
        monkeypatch.setattr(build.debian, "package_names", fake.package_names)
        monkeypatch.setattr(build.debian, "versions", fake.versions)
        return fake
    monkeypatch.delenv(build.SOURCE_ENV, raising=False)
    return install


def test_each_carried_series_has_its_directory_and_the_same_patches():
    dirs = build.series_dirs()
    assert dirs["7.2"] == LINUX / "patches"  # where the 7.2 cache keys expect it
    assert dirs["7.3"] == LINUX / "patches-7.3"
    names = {series: [p.name for p in build.patch_series(path)] for series, path in dirs.items()}
    # Every patch in a directory is in its series, and both series carry the same ones.
    for series, path in dirs.items():
        assert sorted(names[series]) == sorted(p.name for p in path.glob("*.patch")), series
    assert names["7.3"] == names["7.2"]


@pytest.mark.parametrize("version, series", [
    ("7.2.13-1", "7.2"), ("7.3~rc7-1~exp1", "7.3"), ("7.3", "7.3"), ("7.3.1-1", "7.3"),
    ("1:7.10.2-1", "7.10"), ("8.0~rc1-1~exp1", "8.0"),
])
def test_series_of_a_version(version, series):
    assert build.series_of(version) == series
    assert build.package_for(version) == f"linux-source-{series}"


@pytest.mark.parametrize("bad", ["", "seven", "7", "73.x"])
def test_series_of_garbage_names_the_expected_form(bad):
    with pytest.raises(build.BuildError, match="like 7.2.13-1"):
        build.series_of(bad)


def test_7_2_cache_keys_hash_what_they_always_hashed():
    """Carrying 7.3 must not rebuild the 7.2 kernels: same recipe text, same paths."""
    patches = build.patch_series(build.patches_dir_for("7.2.13-1"))
    for flavour in build.FLAVOURS:
        fragments = build.config_fragments(flavour)
        digest = hashlib.sha256(
            f"recipe {build.RECIPE}\nsource linux-source-7.2 7.2.13-1\n".encode())
        for path in patches + fragments:
            digest.update(f"{path.parent.name}/{path.name}\n".encode())
            digest.update(path.read_bytes())
        digest.update(f"{flavour}\n".encode())
        expected = ("" if flavour == "normal" else f"{flavour}-") + digest.hexdigest()[:16]
        assert build.cache_key("7.2.13-1", patches, fragments, flavour) == expected
    assert all(p.parent.name == "patches" for p in patches)


def test_7_3_keys_differ_from_7_2_and_name_its_package():
    fragments = build.config_fragments("normal")
    key72 = build.cache_key("7.2.13-1", build.patch_series(build.patches_dir_for("7.2.13-1")),
                            fragments, "normal")
    key73 = build.cache_key("7.3~rc7-1~exp1",
                            build.patch_series(build.patches_dir_for("7.3~rc7-1~exp1")),
                            fragments, "normal")
    assert key72 != key73


def test_default_is_the_newest_carried_series_in_unstable(debian):
    fake = debian({"unstable": {"linux-source-7.2": ["7.2.12-1", "7.2.13-1"]},
                   "experimental": {"linux-source-7.3": ["7.3~rc7-1~exp1"]}})
    assert build.choose_source() == "7.2.13-1"
    assert all(suite == "unstable" for _, suite in fake.asked)  # experimental not even read


def test_default_follows_unstable_to_7_3_when_7_2_is_gone(debian):
    debian({"unstable": {"linux-source-7.3": ["7.3.1-1"]},
            "experimental": {"linux-source-7.4": ["7.4~rc2-1~exp1"]}})
    assert build.choose_source() == "7.3.1-1"


def test_default_takes_the_newer_series_when_unstable_has_both(debian):
    debian({"unstable": {"linux-source-7.2": ["7.2.13-1"], "linux-source-7.3": ["7.3.1-1"]}})
    assert build.choose_source() == "7.3.1-1"


def test_default_skips_a_series_nobody_ported(debian, capsys):
    debian({"unstable": {"linux-source-7.3": ["7.3.2-1"], "linux-source-7.4": ["7.4.1-1"]}})
    assert build.choose_source() == "7.3.2-1"
    assert "linux-source-7.4, for which no series is carried" in capsys.readouterr().err


def test_default_falls_back_to_experimental_only_without_a_carried_series_in_unstable(debian):
    debian({"unstable": {"linux-source-7.4": ["7.4.1-1"]},
            "experimental": {"linux-source-7.3": ["7.3~rc7-1~exp1"]}})
    assert build.choose_source() == "7.3~rc7-1~exp1"


def test_default_without_any_carried_series_names_what_exists(debian):
    debian({"unstable": {"linux-source-7.4": ["7.4.1-1"]},
            "experimental": {"linux-source-7.5": ["7.5~rc1-1~exp1"]}})
    with pytest.raises(build.BuildError) as err:
        build.choose_source()
    message = str(err.value)
    assert "unstable has linux-source-7.4 7.4.1-1" in message
    assert "experimental has linux-source-7.5 7.5~rc1-1~exp1" in message
    assert "7.2 (third_party/linux/patches)" in message
    assert "7.3 (third_party/linux/patches-7.3)" in message


def test_a_series_asked_for_comes_from_unstable_else_experimental(debian, monkeypatch):
    debian({"unstable": {"linux-source-7.2": ["7.2.13-1"]},
            "experimental": {"linux-source-7.3": ["7.3~rc6-1~exp1", "7.3~rc7-1~exp1"]}})
    assert build.choose_source("7.3") == "7.3~rc7-1~exp1"
    assert build.choose_source("7.2") == "7.2.13-1"
    monkeypatch.setenv(build.SOURCE_ENV, "7.3")  # how scripts/test and the VM harness get 7.3
    assert build.choose_source() == "7.3~rc7-1~exp1"
    assert build.choose_source("7.2") == "7.2.13-1"  # the argument wins over the environment


def test_a_full_version_is_used_as_given_without_asking_debian(debian, monkeypatch):
    fake = debian({}, reachable=False)
    assert build.choose_source("7.3~rc7-1~exp1") == "7.3~rc7-1~exp1"
    monkeypatch.setenv(build.SOURCE_ENV, "7.2.13-1")
    assert build.choose_source() == "7.2.13-1"
    assert fake.asked == []


def test_a_version_without_a_series_fails_naming_what_exists(debian):
    with pytest.raises(build.BuildError) as err:
        build.patches_dir_for("7.4.1-1")
    message = str(err.value)
    assert message.startswith("linux-source-7.4 7.4.1-1: bpfoom carries no patch series for "
                              "Linux 7.4; it has series for 7.2 (third_party/linux/patches), "
                              "7.3 (third_party/linux/patches-7.3)")
    assert "third_party/linux/patches-7.4/" in message
    debian({"unstable": {"linux-source-7.4": ["7.4.1-1"]}})
    with pytest.raises(build.BuildError, match="^linux-source-7.4: bpfoom carries no patch"):
        build.choose_source("7.4")


def test_offline_the_cached_release_wins_over_a_cached_candidate(debian, monkeypatch):
    debian({}, reachable=False)
    monkeypatch.setattr(build, "_cached_sources", lambda: {
        "7.2.13-1": "7.2", "7.3~rc7-1~exp1": "7.3", "7.1.4-1": "7.1"})
    assert build.choose_source() == "7.2.13-1"
    assert build.choose_source("7.3") == "7.3~rc7-1~exp1"
    monkeypatch.setattr(build, "_cached_sources", lambda: {"7.1.4-1": "7.1"})
    with pytest.raises(build.BuildError, match="network is unreachable"):
        build.choose_source()


def test_prune_keeps_one_tree_per_carried_series(tmp_path):
    for kind, names in {"src": ["7.2.12-1", "7.2.13-1", "7.3~rc7-1~exp1", "7.1.4-1", "notes"],
                        "obj": ["7.2.12-1", "7.2.13-1-lockdep", "7.3~rc7-1~exp1",
                                "7.3~rc6-1~exp1-kasan"]}.items():
        for name in names:
            (tmp_path / kind / name).mkdir(parents=True)
    (tmp_path / "out").mkdir()
    build._prune(tmp_path, "7.3~rc7-1~exp1")
    left = {kind: sorted(p.name for p in (tmp_path / kind).iterdir()) for kind in ("src", "obj")}
    # 7.1 is no longer carried; 7.3~rc6 is an older 7.3; 7.2's trees are another series'.
    assert left == {"src": ["7.2.12-1", "7.2.13-1", "7.3~rc7-1~exp1", "notes"],
                     "obj": ["7.2.12-1", "7.2.13-1-lockdep", "7.3~rc7-1~exp1"]}
    build._prune(tmp_path, "7.2.13-1")
    left = {kind: sorted(p.name for p in (tmp_path / kind).iterdir()) for kind in ("src", "obj")}
    assert left == {"src": ["7.2.13-1", "7.3~rc7-1~exp1", "notes"],
                    "obj": ["7.2.13-1-lockdep", "7.3~rc7-1~exp1"]}


def test_the_harness_entry_point_keeps_its_signature():
    import inspect
    parameters = inspect.signature(build.build).parameters
    assert {"debug", "flavour", "source_version", "patches_dir"} <= set(parameters)
    assert parameters["patches_dir"].default is None  # the series of the chosen version
