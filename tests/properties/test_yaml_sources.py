"""Property: any text read as Compose or Kubernetes YAML either fails to load with
yaml.YAMLError (the loader's documented refusal), or holds a field of the wrong shape
(ShapeError, naming it), both of which pyaudit reports as input errors, or gives documents
from which the sources build container specs and the rules findings, without any other
exception, whatever types the documents hold where a mapping, a list or a string is expected."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pysbx.audit.rules.container import container_findings
from pysbx.audit.sources.compose import compose_specs, is_compose
from pysbx.audit.sources.kubernetes import WORKLOADS, is_kubernetes, kubernetes_specs
from pysbx.audit.sources.shape import ShapeError
from pysbx.audit.sources.yamllines import load_documents
from tests.properties.strategies import examples, yaml_texts

COMPOSE_KEYS = (
    "services", "image", "build", "privileged", "pid", "ipc", "uts", "network_mode", "user", "read_only", "cap_add",
    "security_opt", "volumes", "type", "bind", "source", "target", "read_only", "<<",
)  # fmt: skip
COMPOSE_VALUES = ("seccomp=unconfined", "seccomp:x", "no-new-privileges", "/:/host", "./a:/b:ro", "a:b", "bind")
KUBERNETES_KEYS = (
    "apiVersion", "kind", "items", "metadata", "name", "annotations", "spec", "template", "jobTemplate",
    "containers", "initContainers", "ephemeralContainers", "securityContext", "hostPID", "hostNetwork", "hostIPC",
    "privileged", "runAsUser", "runAsNonRoot", "seccompProfile", "allowPrivilegeEscalation",
    "readOnlyRootFilesystem", "capabilities", "add", "volumes", "hostPath", "path", "volumeMounts", "mountPath",
    "readOnly", "type", "seccomp.security.alpha.kubernetes.io/pod", "container.seccomp.security.alpha.kubernetes.io/a",
)  # fmt: skip
KUBERNETES_VALUES = (*sorted(WORKLOADS), "List", "PodList", "v1", "Unconfined", "RuntimeDefault", "sock")
Specs = Callable[..., list]  # type: ignore[type-arg]
Tree = st.SearchStrategy[object]


def compose_shape(tree: Tree) -> st.SearchStrategy[dict[object, object]]:
    """`services:` of named services whose settings are drawn trees."""
    service = st.one_of(st.dictionaries(st.sampled_from(COMPOSE_KEYS), tree, max_size=6), tree)
    return st.fixed_dictionaries({"services": st.dictionaries(st.sampled_from(("a", "b", "0")), service, max_size=3)})


def kubernetes_shape(tree: Tree) -> st.SearchStrategy[dict[object, object]]:
    """A workload (or List) whose metadata and spec are drawn, often with a pod template."""
    containers = st.lists(st.dictionaries(st.sampled_from(KUBERNETES_KEYS), tree, max_size=6), max_size=2)
    pod = st.fixed_dictionaries({}, optional={key: tree for key in KUBERNETES_KEYS[14:]}).flatmap(
        lambda settings: containers.map(lambda found: {**settings, "containers": found})
    )
    spec = st.one_of(
        pod, st.fixed_dictionaries({"template": st.fixed_dictionaries({"spec": pod, "metadata": tree})}), tree
    )
    return st.fixed_dictionaries(
        {"apiVersion": st.just("v1"), "kind": st.sampled_from(KUBERNETES_VALUES), "spec": spec},
        optional={"metadata": tree, "items": tree},
    )


def audit_documents(text: str, is_kind: Callable[[object], bool], specs_of: Specs) -> int:
    """What pyaudit does with such a file; the number of specs it found."""
    try:
        documents = [document for document in load_documents(text) if document is not None]
    except yaml.YAMLError:
        return 0
    found = 0
    for document in documents:
        if is_kind(document):
            try:
                specs = specs_of(document, "input.yaml")
            except ShapeError as error:
                assert str(error).startswith("input.yaml:") and ": expected " in str(error)
                continue
            for spec in specs:
                list(container_findings(spec))
                found += 1
    return found


@settings(max_examples=examples(250), deadline=None)
@given(yaml_texts(COMPOSE_KEYS, COMPOSE_VALUES, compose_shape))
def test_any_compose_text_gives_specs_or_a_yaml_error(text: str) -> None:
    audit_documents(text, is_compose, compose_specs)


@settings(max_examples=examples(250), deadline=None)
@given(yaml_texts(KUBERNETES_KEYS, KUBERNETES_VALUES, kubernetes_shape))
def test_any_kubernetes_text_gives_specs_or_a_yaml_error(text: str) -> None:
    audit_documents(text, is_kubernetes, kubernetes_specs)


# Regressions: each input once raised something other than yaml.YAMLError.
LOADER_CASES = ["a: !!int abc", "a: !!float x", "[" * 5000 + "]" * 5000, "{a: " * 5000 + "}" * 5000]


@pytest.mark.parametrize("text", LOADER_CASES, ids=["bad-int-tag", "bad-float-tag", "deep-list", "deep-mapping"])
def test_a_value_its_tag_cannot_hold_is_a_yaml_error(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        list(load_documents(text))


KUBERNETES_CASES: Sequence[str] = (
    "apiVersion: v1\nkind: [Pod]\n",
    "apiVersion: v1\nkind: Pod\nmetadata: x\nspec: {containers: [{name: a}]}\n",
    "apiVersion: v1\nkind: List\nitems: 5\n",
    "apiVersion: batch/v1\nkind: CronJob\nspec: {jobTemplate: x}\n",
    "apiVersion: batch/v1\nkind: CronJob\nspec: {jobTemplate: {spec: x}}\n",
    "apiVersion: v1\nkind: Pod\nspec:\n  volumes: [{name: [a], hostPath: {path: /}}]\n"
    "  containers: [{volumeMounts: [{name: [a]}]}]\n",
    "apiVersion: v1\nkind: Pod\nspec:\n  volumes: [{name: a, hostPath: {path: /}}]\n"
    "  containers: [{volumeMounts: [{name: {b: 1}}]}]\n",
    # found by fuzz_kubernetes.py: a hostPath volume and a mount, both without a name
    "apiVersion: v1\nkind: Pod\nspec:\n  volumes: [{hostPath: {path: /}}]\n  containers: [{volumeMounts: [{mountPath: /x}]}]\n",
)


@pytest.mark.parametrize("text", KUBERNETES_CASES)
def test_a_manifest_of_the_wrong_shape_gives_specs_or_an_input_error_not_a_crash(text: str) -> None:
    audit_documents(text, is_kubernetes, kubernetes_specs)
