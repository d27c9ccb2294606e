"""A cloud's Place is stored by its fields and read back as their declared types,
also from the states older versions wrote (fields missing or empty)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pulumi_iterative.clouds.place import PlaceRecord
from pulumi_iterative.task import TaskRef


@dataclass(frozen=True)
class Spot(PlaceRecord):
    bucket: str
    prefix: str
    own: bool
    zone: str = "z-default"
    size_gb: int = 20
    keep: bool = True
    tags: tuple[tuple[str, str], ...] = ()
    names: tuple[str, ...] = ()
    version: int = 2


def test_every_field_is_stored_under_its_name_and_read_back_equal() -> None:
    spot = Spot("b", "p/q", True, "z1", 7, False, (("a", "1"), ("b", "2")), ("X", "Y"), 3)
    stored = spot.to_dict()
    assert stored == {
        "bucket": "b",
        "prefix": "p/q",
        "own": True,
        "zone": "z1",
        "size_gb": 7,
        "keep": False,
        "tags": {"a": "1", "b": "2"},
        "names": ["X", "Y"],
        "version": 3,
    }
    assert Spot.from_extra(stored) == spot


def test_missing_or_empty_fields_take_what_the_caller_says_else_their_defaults() -> None:
    read = Spot.from_extra(
        {"bucket": "b", "zone": "", "tags": {"k": 1}, "size_gb": None}, prefix="", version=1
    )
    assert read == Spot("b", "", False, "z-default", 20, True, (("k", "1"),), (), 1)


def test_a_stored_false_stays_false_where_the_default_is_true() -> None:
    assert Spot.from_extra({"bucket": "b", "prefix": "", "keep": False}).keep is False


def test_a_field_with_no_default_and_no_fallback_must_be_stored() -> None:
    with pytest.raises(KeyError, match="prefix"):
        Spot.from_extra({"bucket": "b"})


def test_a_field_of_a_type_that_is_not_stored_is_refused_by_name() -> None:
    @dataclass(frozen=True)
    class Odd(PlaceRecord):
        ratio: float = 0.5

    with pytest.raises(TypeError, match=r"Odd\.ratio"):
        Odd.from_extra({})


def _ref(extra: dict[str, object]) -> TaskRef:
    return TaskRef("t-1", "x", "region-1", {}, 1, 0.0, 0.0, extra=extra)


def test_each_clouds_place_reads_what_older_versions_stored() -> None:
    from pulumi_iterative.clouds.aws.backend import Place as AwsPlace
    from pulumi_iterative.clouds.azure.backend import Place as AzurePlace
    from pulumi_iterative.clouds.gcp.backend import Place as GcpPlace
    from pulumi_iterative.clouds.k8s.backend import Place as K8sPlace

    assert AwsPlace.from_ref(_ref({"bucket": "b"})) == AwsPlace("b", "", False)
    assert GcpPlace.from_ref(_ref({"project": "p", "bucket": "b"})).prefix == ""
    azure = AzurePlace.from_ref(
        _ref({"subscription": "s", "group": "g", "account": "a", "container": "c"})
    )
    assert (azure.location, azure.prefix, azure.own_group) == ("region-1", "", True)
    k8s = K8sPlace.from_ref(_ref({"namespace": "ns"}))
    assert (k8s.context, k8s.version) == ("", 1)  # version 1 pinned the context's name
    for place in (azure, k8s, GcpPlace("p", "b", "x", True, tags=(("k", "v"),))):
        assert type(place).from_ref(_ref(place.to_dict())) == place
