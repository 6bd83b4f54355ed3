"""The last-good rule as the one pure function that ``serve`` and the operator both call."""

from __future__ import annotations

from propylon_compiler import last_good, manifests

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: pets, namespace: demo}}
spec:
  routes:
    - routeKey: GET /hello
      integration: {{type: {type}, mock: {{statusCode: 200, body: {body}}}}}
"""
STAGE = """\
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: dev, namespace: demo}}
spec: {{apiRef: {api}, basePath: /dev}}
"""


def docs(*texts: str) -> list[manifests.Document]:
    documents, problems = manifests.parse_text("---\n".join(texts), "in.yaml")
    assert not problems
    return documents


def bodies(kept: last_good.Kept) -> list[str]:
    return [r.integration.mock.body for s in kept.result.snapshot.stages for r in s.routes if r.integration.mock]


def test_an_own_error_gets_the_last_good_version_and_the_status_says_what_is_wrong() -> None:
    first = last_good.compile_keeping_last_good(
        docs(API.format(type="MOCK", body="v1"), STAGE.format(api="pets")), last_good.Memory()
    )
    assert bodies(first) == ["v1"] and not first.substituted
    broken = last_good.compile_keeping_last_good(
        docs(API.format(type="NOT_A_TYPE", body="v2"), STAGE.format(api="pets")), first.memory
    )
    assert bodies(broken) == ["v1"]
    assert broken.substituted == {("Api", "demo", "pets")}
    status = broken.status(("Api", "demo", "pets"))
    assert status is not None and not status.ready
    assert any("integration.type" in str(d) for d in broken.reported())
    # The Stage kept serving and is reported as served, not as broken: no line says it serves nothing.
    stage = broken.status(("Stage", "demo", "dev"))
    assert stage is not None and stage.ready
    assert not any(d.kind == "Stage" for d in broken.reported()), broken.reported()


def test_a_consequence_heals_when_the_broken_object_it_points_at_is_put_back() -> None:
    memory = last_good.compile_keeping_last_good(
        docs(API.format(type="MOCK", body="v1"), STAGE.format(api="pets")), last_good.Memory()
    ).memory
    kept = last_good.compile_keeping_last_good(
        docs(API.format(type="NOT_A_TYPE", body="v2"), STAGE.format(api="pets")), memory
    )
    assert kept.substituted == {("Api", "demo", "pets")}  # the Stage needed no substitute of its own


def test_an_edit_that_breaks_a_reference_keeps_the_last_good_version_of_the_edited_object() -> None:
    memory = last_good.compile_keeping_last_good(
        docs(API.format(type="MOCK", body="v1"), STAGE.format(api="pets")), last_good.Memory()
    ).memory
    kept = last_good.compile_keeping_last_good(
        docs(API.format(type="MOCK", body="v1"), STAGE.format(api="nosuch")), memory
    )
    assert kept.substituted == {("Stage", "demo", "dev")}
    assert bodies(kept) == ["v1"]
    # The edited Stage is the one served from memory: its own broken reference is still said.
    assert any(d.kind == "Stage" and "demo/nosuch not found" in d.message for d in kept.reported())


def test_a_deleted_object_is_forgotten_and_an_unchanged_one_is_never_substituted() -> None:
    memory = last_good.compile_keeping_last_good(
        docs(API.format(type="MOCK", body="v1"), STAGE.format(api="pets")), last_good.Memory()
    ).memory
    gone = last_good.compile_keeping_last_good(docs(STAGE.format(api="pets")), memory)
    assert ("Api", "demo", "pets") not in gone.memory.good
    assert not gone.substituted  # the Stage is unchanged: its remembered body cannot help
    back = last_good.compile_keeping_last_good(
        docs(API.format(type="NOT_A_TYPE", body="v2"), STAGE.format(api="pets")), gone.memory
    )
    assert bodies(back) == []  # nothing to fall back to: the deletion took the old body with it
