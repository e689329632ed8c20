"""dbvers.graph over hand-built histories: commits written to a real object store (merge
commits with two parents, ours first), then ordering, reachability, ancestry and merge bases."""

from __future__ import annotations

import sys
from itertools import islice
from pathlib import Path

import pytest

from dbvers import graph, revisions
from dbvers.errors import (
    AmbiguousRefError,
    HistoryDamagedError,
    MissingObjectError,
    UnknownRefError,
)
from dbvers.objects import Commit
from dbvers.storage.local import LocalObjectStore as ObjectStore
from dbvers.storage.local_refs import LocalRefStore as RefStore

SCHEMA = "5" * 64


class Dag:
    """Commits named by letters, stored in an ObjectStore; ``ts`` is seconds after a fixed time."""

    def __init__(self, root: Path) -> None:
        self.store = ObjectStore(root / "objects")
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}

    def add(self, name: str, *parents: str, ts: int, missing_parent: str | None = None) -> str:
        ps = tuple(self.ids[p] for p in parents) + ((missing_parent,) if missing_parent else ())
        c = Commit(parents=ps, schema=SCHEMA, patch=None, snapshot=None, message=name, author="t",
                   timestamp=f"2024-01-01T{ts // 3600:02d}:{ts // 60 % 60:02d}:{ts % 60:02d}.000000Z")
        oid = self.store.put_bytes("commit", c.to_bytes())
        self.ids[name], self.names[oid] = oid, name
        return oid

    def __getitem__(self, name: str) -> str:
        return self.ids[name]

    def named(self, ids: list[str] | set[str]) -> list[str]:
        return [self.names[o] for o in ids]

    def base(self, a: str, b: str) -> list[str]:
        return self.named(graph.merge_base(self.store, self[a], self[b]))

    def log(self, *tips: str) -> list[str]:
        return [self.names[o] for o, _ in graph.ancestors(self.store, [self[t] for t in tips])]


@pytest.fixture
def dag(tmp_path: Path) -> Dag:
    return Dag(tmp_path)


def test_linear(dag: Dag) -> None:
    dag.add("a", ts=1)
    dag.add("b", "a", ts=2)
    dag.add("c", "b", ts=3)
    assert dag.log("c") == ["c", "b", "a"]
    assert [dag.names[o] for o, _ in graph.first_parents(dag.store, dag["c"])] == ["c", "b", "a"]
    assert dag.base("c", "a") == ["a"] and dag.base("a", "c") == ["a"] and dag.base("b", "b") == ["b"]
    assert graph.is_ancestor(dag.store, dag["a"], dag["c"])
    assert graph.is_ancestor(dag.store, dag["c"], dag["c"])
    assert not graph.is_ancestor(dag.store, dag["c"], dag["a"])
    assert graph.reachable(dag.store, [dag["b"]]) == {dag["a"], dag["b"]}


def branch_and_merge(dag: Dag) -> None:
    #   base - x1 - x2 - m      (m = merge of y1 into x2: parents x2, y1)
    #      \          /
    #       y1 ------+ - y2
    dag.add("base", ts=1)
    dag.add("x1", "base", ts=2)
    dag.add("y1", "base", ts=3)
    dag.add("x2", "x1", ts=4)
    dag.add("m", "x2", "y1", ts=5)
    dag.add("y2", "y1", ts=6)


def test_branch(dag: Dag) -> None:
    branch_and_merge(dag)
    assert dag.base("x2", "y1") == ["base"] == dag.base("y1", "x2")
    assert dag.base("x1", "y2") == ["base"]
    assert not graph.is_ancestor(dag.store, dag["x2"], dag["y1"])
    assert not graph.is_ancestor(dag.store, dag["y1"], dag["x2"])
    assert dag.log("x2", "y1") == ["x2", "y1", "x1", "base"]


def test_merge_commit_with_two_parents(dag: Dag) -> None:
    branch_and_merge(dag)
    assert graph.commit_reader(dag.store)(dag["m"]).parents == (dag["x2"], dag["y1"])  # ours first
    # every parent followed, each commit once, newest first
    assert dag.log("m") == ["m", "x2", "y1", "x1", "base"]
    # the first-parent chain stays on ours
    assert [dag.names[o] for o, _ in graph.first_parents(dag.store, dag["m"])] == ["m", "x2", "x1", "base"]
    assert graph.is_ancestor(dag.store, dag["y1"], dag["m"])  # merged: a fast-forward from y1 to m
    assert dag.base("m", "y1") == ["y1"]
    assert dag.base("m", "y2") == ["y1"] == dag.base("y2", "m")  # after the merge, the base moves up
    assert graph.merge_base_one(dag.store, dag["m"], dag["y2"]) == dag["y1"]
    assert graph.reachable(dag.store, {dag["m"]: "refs/heads/main"}) == {
        dag[n] for n in ("m", "x2", "x1", "y1", "base")}


def test_criss_cross_has_two_best_bases(dag: Dag) -> None:
    #   base - a1 - a2 (merge a1 + b1)
    #      \    X
    #       b1 - b2 (merge b1 + a1)
    dag.add("base", ts=1)
    dag.add("a1", "base", ts=2)
    dag.add("b1", "base", ts=3)
    dag.add("a2", "a1", "b1", ts=4)
    dag.add("b2", "b1", "a1", ts=5)
    assert dag.base("a2", "b2") == ["b1", "a1"]  # newest first
    assert dag.base("b2", "a2") == ["b1", "a1"]
    one = graph.merge_base_one(dag.store, dag["a2"], dag["b2"])
    assert one == dag["b1"] == graph.merge_base_one(dag.store, dag["b2"], dag["a2"])


def test_ties_are_broken_by_id(dag: Dag) -> None:
    dag.add("base", ts=1)
    dag.add("p", "base", ts=2)
    dag.add("q", "base", ts=2)
    dag.add("m", "p", "q", ts=3)
    dag.add("n", "q", "p", ts=3)
    first, second = sorted([dag["p"], dag["q"]])
    assert [dag.names[o] for o in (first, second)] == dag.log("m")[1:3]
    assert graph.merge_base(dag.store, dag["m"], dag["n"]) == [first, second]
    assert graph.merge_base_one(dag.store, dag["m"], dag["n"]) == first


def test_skewed_clocks_do_not_change_the_answer(dag: Dag) -> None:
    # Children stamped before their parents (a clock set back): the timestamps only order
    # the walk; the bases and ancestry still come from the parent links.
    dag.add("base", ts=50)
    dag.add("x1", "base", ts=10)
    dag.add("x2", "x1", ts=5)
    dag.add("y1", "base", ts=40)
    dag.add("y2", "y1", ts=1)
    dag.add("m", "x2", "y2", ts=2)
    dag.add("z", "y2", ts=0)
    assert dag.base("x2", "y2") == ["base"]
    assert dag.base("m", "z") == ["y2"] == dag.base("z", "m")
    assert graph.is_ancestor(dag.store, dag["base"], dag["m"])
    assert graph.is_ancestor(dag.store, dag["y2"], dag["m"])
    assert not graph.is_ancestor(dag.store, dag["z"], dag["m"])
    assert sorted(dag.log("m")) == sorted(["m", "x2", "x1", "y2", "y1", "base"])


def test_disjoint_roots(dag: Dag) -> None:
    dag.add("r1", ts=1)
    dag.add("a", "r1", ts=2)
    dag.add("r2", ts=3)
    dag.add("b", "r2", ts=4)
    assert dag.base("a", "b") == []
    assert graph.merge_base_one(dag.store, dag["a"], dag["b"]) is None
    assert not graph.is_ancestor(dag.store, dag["r1"], dag["b"])
    dag.add("j", "a", "b", ts=5)  # a merge of unrelated histories has two roots
    assert dag.base("j", "b") == ["b"]
    assert set(dag.log("j")) == {"j", "a", "b", "r1", "r2"}


def test_missing_parent_is_reported(dag: Dag) -> None:
    lost = "e" * 64
    dag.add("a", ts=1)
    dag.add("b", "a", ts=2, missing_parent=lost)  # a merge whose second parent is gone
    dag.add("c", "b", ts=3)
    reach = graph.walk(dag.store, {dag["c"]: "refs/heads/main"})
    assert set(reach.commits) == {dag["a"], dag["b"], dag["c"]}
    assert reach.problems == [f"commit {lost[:12]} (reached from commit {dag['b'][:12]}) is missing from the store"]
    assert lost in reach.seen
    with pytest.raises(HistoryDamagedError, match="gc refused"):
        graph.reachable(dag.store, [dag["c"]], action="gc")
    # an ordered walk raises the store's own error when (and only when) it gets there
    walked = graph.ancestors(dag.store, dag["c"])
    assert [dag.names[o] for o, _ in (next(walked), next(walked))] == ["c", "b"]
    with pytest.raises(MissingObjectError, match=lost[:12]):
        list(walked)
    with pytest.raises(MissingObjectError):
        graph.merge_base(dag.store, dag["c"], lost)
    # what does not need the lost commit still works: the first-parent chain
    assert [dag.names[o] for o, _ in graph.first_parents(dag.store, dag["c"])] == ["c", "b", "a"]


def test_unreadable_commit_is_reported(dag: Dag) -> None:
    dag.add("a", ts=1)
    dag.add("b", "a", ts=2)
    path = dag.store.path(dag["a"])
    path.write_bytes(path.read_bytes()[:10])
    reach = graph.walk(dag.store, [dag["b"]])
    assert list(reach.commits) == [dag["b"]]
    assert len(reach.problems) == 1 and "is unreadable" in reach.problems[0] and dag["a"][:12] in reach.problems[0]


def test_deep_history_is_walked_without_recursion() -> None:
    # 30k commits in memory (the callable form of a reader): no recursion limit, and fast
    commits: dict[str, Commit] = {}
    prev: tuple[str, ...] = ()
    n = 30_000
    for i in range(n):
        oid = f"{i:064x}"
        commits[oid] = Commit(parents=prev, schema=SCHEMA, patch=None, snapshot=None, message="",
                              author="", timestamp=f"2024-01-01T00:00:00.{i % 1000000:06d}Z")
        prev = (oid,)
    tip, root = f"{n - 1:064x}", f"{0:064x}"
    fork = "f" * 64
    commits[fork] = Commit(parents=(f"{10:064x}",), schema=SCHEMA, patch=None, snapshot=None,
                           message="", author="", timestamp="2023-01-01T00:00:00.000000Z")
    assert n > sys.getrecursionlimit()
    assert len(graph.reachable(commits.__getitem__, [tip])) == n
    assert sum(1 for _ in graph.ancestors(commits.__getitem__, tip)) == n
    assert graph.is_ancestor(commits.__getitem__, root, tip)
    assert graph.merge_base(commits.__getitem__, tip, fork) == [f"{10:064x}"]


def test_revisions_name_merge_parents(dag: Dag, tmp_path: Path) -> None:
    branch_and_merge(dag)
    refs = RefStore(tmp_path)
    (tmp_path / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    refs.update("refs/heads/main", dag["m"], expect=None, message="test")
    refs.update("refs/tags/v1", dag["x1"], expect=None, message="test")
    refs.set_head(branch="main", message="test")

    def resolve(rev: str) -> str:
        return dag.names[revisions.resolve(rev, refs, dag.store, dag.store)]

    assert resolve("HEAD") == resolve("@") == resolve("main") == "m"
    assert resolve("main^") == resolve("main^1") == resolve("HEAD~1") == "x2"  # ours
    assert resolve("main^2") == "y1"  # theirs: a merge's second parent
    assert resolve("main^2~1") == resolve("HEAD~3") == resolve("v1~1") == "base"
    assert resolve("main^0") == "m"
    assert resolve(dag["y2"]) == resolve(dag["y2"][:8].upper()) == "y2"
    with pytest.raises(UnknownRefError, match="'main~4' goes past the first commit"):
        resolve("main~4")
    with pytest.raises(UnknownRefError, match="'v1\\^2': commit has no parent 2"):
        resolve("v1^2")
    with pytest.raises(UnknownRefError, match="unknown revision 'nosuch'"):
        resolve("nosuch")
    # two commits sharing a 4-digit prefix (the ids are fixed: the same pair every run)
    prefixes: dict[str, str] = {}
    for i in range(2000):
        oid = dag.add(f"c{i}", ts=100 + i)
        if (other := prefixes.setdefault(oid[:4], oid)) != oid:
            with pytest.raises(AmbiguousRefError, match="is ambiguous"):
                resolve(oid[:4])
            assert resolve(oid[:12]) == f"c{i}" and resolve(other) != f"c{i}"
            break
    else:
        pytest.fail("no shared prefix among 2000 ids")  # pragma: no cover


def test_merge_base_agrees_with_brute_force_on_random_dags() -> None:
    # Random DAGs (merges of up to three parents, several roots, clocks that go back and
    # forth): merge_base and is_ancestor against the definitions computed the slow way.
    import random

    rng = random.Random(11)
    for _ in range(150):
        commits = _random_dag(rng, rng.randint(2, 30))
        ids = list(commits)
        read = commits.__getitem__
        below = {o: graph.ancestor_ids(read, [o]) for o in ids}
        for _ in range(10):
            a, b = rng.choice(ids), rng.choice(ids)
            common = below[a] & below[b]
            best = {c for c in common if not any(c in below[d] - {d} for d in common)}
            got = graph.merge_base(read, a, b)
            assert set(got) == best and len(got) == len(best)
            assert got == graph.merge_base(read, b, a)
            assert graph.merge_base_one(read, a, b) == (got[0] if got else None)
            assert graph.is_ancestor(read, a, b) == (a in below[b])


def linear_history(n: int) -> dict[str, Commit]:
    """Commits 0..n-1 (ids are their numbers in hex), each the parent of the next, a second apart."""
    commits: dict[str, Commit] = {}
    prev: tuple[str, ...] = ()
    for i in range(n):
        oid = f"{i:064x}"
        commits[oid] = Commit(parents=prev, schema=SCHEMA, patch=None, snapshot=None, message="", author="",
                              timestamp=f"2024-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000Z")
        prev = (oid,)
    return commits


def test_walks_near_the_tips_read_only_near_the_tips() -> None:
    # A long history and a branch from near its tip: a merge base or ancestry check costs
    # the commits since the fork, not the whole history (timestamps bound the walk).
    commits = linear_history(5000)
    fork_point, tip = f"{4990:064x}", f"{4999:064x}"
    side = "f" * 64
    commits[side] = Commit(parents=(fork_point,), schema=SCHEMA, patch=None, snapshot=None, message="",
                           author="", timestamp="2024-01-02T00:00:00.000000Z")
    reads: list[str] = []

    def read(oid: str) -> Commit:
        reads.append(oid)
        return commits[oid]

    assert graph.merge_base(read, tip, side) == [fork_point]
    assert len(set(reads)) < 20
    reads.clear()
    assert graph.is_ancestor(read, fork_point, tip) and not graph.is_ancestor(read, side, tip)
    assert len(set(reads)) < 20
    reads.clear()
    assert len(list(islice(graph.ancestors(read, tip), 3))) == 3 and len(reads) <= 3


def _random_dag(rng, n: int, *, skewed: bool = True) -> dict[str, Commit]:  # type: ignore[no-untyped-def]
    """Random merges of up to three parents, several roots; clocks random, or each commit
    after its parents (*skewed* False)."""
    commits: dict[str, Commit] = {}
    ids: list[str] = []
    for i in range(n):
        k = 0 if not ids or rng.random() < 0.1 else rng.choice([1, 1, 1, 2, 2, 3])
        parents = tuple(dict.fromkeys(rng.choice(ids) for _ in range(k)))
        oid = f"{rng.getrandbits(64):064x}"
        commits[oid] = Commit(parents=parents, schema=SCHEMA, patch=None, snapshot=None, message=str(i),
                              author="", timestamp=f"2024-01-01T00:{rng.randint(0, 59) if skewed else i:02d}:00.000000Z")
        ids.append(oid)
    return commits


def test_push_negotiation_and_ahead_behind_agree_with_brute_force() -> None:
    # only_in (what a push sends) may over-include under skewed clocks, never miss a commit;
    # parents_first against its definition; ahead_behind exact where clocks agree with the
    # history (it is the merge-base walk, bounded by timestamps, as git's was before
    # generation numbers).
    import random

    rng = random.Random(5)
    for round_ in range(300):
        skewed = round_ % 2 == 0
        commits = _random_dag(rng, rng.randint(2, 30), skewed=skewed)
        ids = list(commits)
        read = commits.__getitem__
        below = {o: graph.ancestor_ids(read, [o]) for o in ids}
        wants = rng.sample(ids, min(len(ids), rng.randint(1, 3)))
        haves = rng.sample(ids, min(len(ids), rng.randint(0, 3)))
        must = set().union(*(below[w] for w in wants)) - set().union(set(), *(below[h] for h in haves))
        got = graph.only_in(read, wants, haves)
        assert must <= set(got) and len(got) == len(set(got))
        assert not set(got) & set(haves)
        a, b = rng.choice(ids), rng.choice(ids)
        if not skewed:
            assert graph.ahead_behind(read, a, b) == (len(below[a] - below[b]), len(below[b] - below[a]))
        subset = {o: commits[o] for o in rng.sample(ids, rng.randint(1, len(ids)))}
        order = graph.parents_first(subset)
        assert sorted(order) == sorted(subset)
        pos = {o: i for i, o in enumerate(order)}
        assert all(pos[p] < pos[o] for o in subset for p in subset[o].parents if p in subset)


def test_push_negotiation_reads_only_the_new_part_of_a_long_history() -> None:
    commits = linear_history(5000)
    reads: list[str] = []

    def read(oid: str) -> Commit:
        reads.append(oid)
        if oid not in commits:
            raise MissingObjectError(oid)
        return commits[oid]

    assert graph.only_in(read, [f"{4999:064x}"], [f"{4995:064x}", "e" * 64]) == [f"{i:064x}" for i in (4999, 4998, 4997, 4996)]
    assert len(set(reads)) < 10  # and a have the local store lacks ("e"*64) is ignored
