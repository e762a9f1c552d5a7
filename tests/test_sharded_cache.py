"""ShardedStore: the embedding cache a cluster shares through any fsspec file system, with
the SQLite store's guarantees (damage recomputed, never served; concurrent writers safe)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURE_TEXTS, transformed_from_cache
from skstack import EncoderEmbedder, ShardedStore, clear_memory_cache, warm_cache
from skstack import sharded_cache as sharded
from skstack.cache import open_stores, text_key


def _value(key: bytes) -> np.ndarray:
    """The array every process writes under ``key``: its bytes, so a mix-up shows."""
    return np.frombuffer(key, dtype=np.uint8).astype(np.float32)


def _keys(n: int, tag: str = "") -> list[bytes]:
    return [text_key(f"{tag}text {i}") for i in range(n)]


def _segments(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{sharded._SUFFIX}"))


def test_an_fsspec_url_selects_the_sharded_store(tmp_path):
    stores = open_stores(f"file://{tmp_path}")
    assert isinstance(stores[1], ShardedStore) and stores[1].root == str(tmp_path)
    with pytest.raises(ValueError, match=r"No cache store is registered for 'nope://'.*fsspec"):
        open_stores("nope://x")


def test_arrays_round_trip_and_a_later_put_replaces(tmp_path):
    store = ShardedStore(f"file://{tmp_path}")
    keys = _keys(300)
    store.put_many("fp", {k: _value(k) for k in keys})
    words = np.arange(12, dtype=np.float16).reshape(3, 4)  # word mode: float16, 2-D
    store.put_many("fp", {keys[0]: words})
    got = ShardedStore(f"file://{tmp_path}").get_many("fp", [*keys, text_key("absent")])
    assert set(got) == set(keys)
    assert got[keys[0]].dtype == np.float16 and np.array_equal(got[keys[0]], words)
    assert all(np.array_equal(got[k], _value(k)) for k in keys[1:])
    assert store.get_many("other fingerprint", keys) == {}
    store.clear("fp")
    assert store.get_many("fp", keys) == {} and not _segments(tmp_path)


def test_an_encoder_reads_another_processes_vectors_from_a_url(tiny_bert, tmp_path):
    url = f"file://{tmp_path}/cache"
    first = EncoderEmbedder(tiny_bert, cache=url).fit(FIXTURE_TEXTS)
    reference = first.transform(FIXTURE_TEXTS)
    clear_memory_cache()  # as a new process or another machine would start
    again = EncoderEmbedder(tiny_bert, cache=url).fit(FIXTURE_TEXTS)
    np.testing.assert_array_equal(transformed_from_cache(again, FIXTURE_TEXTS), reference)
    clear_memory_cache()
    assert warm_cache(again, FIXTURE_TEXTS) == 0  # a URL counts as shared; all there already


def test_a_damaged_segment_is_moved_aside_and_recomputed(tmp_path):
    store = ShardedStore(f"file://{tmp_path}")
    keys = _keys(64)
    store.put_many("fp", {k: _value(k) for k in keys})
    victim = _segments(tmp_path)[0]
    lost = set(sharded.decode_index("fp", victim.read_bytes(), None)[0])
    victim.write_bytes(b"\x00garbage" * 10)
    fresh = ShardedStore(f"file://{tmp_path}")
    fresh._indexes.clear()  # as another process, which never read the old index
    with pytest.warns(RuntimeWarning, match="is damaged .*moved to .*corrupt-"):
        got = fresh.get_many("fp", keys)
    assert set(got) == set(keys) - lost and all(np.array_equal(got[k], _value(k)) for k in got)
    assert not victim.exists() and list(victim.parent.glob(victim.name + ".corrupt-*"))
    fresh.put_many("fp", {k: _value(k) for k in lost})  # recomputed, stored again
    assert set(fresh.get_many("fp", keys)) == set(keys)


def test_flipped_bytes_or_a_misplaced_segment_are_never_served(tmp_path):
    store = ShardedStore(f"file://{tmp_path}")
    keys = _keys(64)
    store.put_many("fp", {k: _value(k) for k in keys})
    victim = _segments(tmp_path)[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # the last array's bytes
    victim.write_bytes(bytes(data))
    store._indexes.clear()
    got = store.get_many("fp", keys)
    assert len(got) == len(keys) - 1 and all(np.array_equal(got[k], _value(k)) for k in got)
    # a segment copied under another fingerprint is not that fingerprint's
    other = tmp_path / sharded._FORMAT / "fp2" / victim.parent.name
    other.mkdir(parents=True)
    (other / victim.name).write_bytes(victim.read_bytes())
    with pytest.warns(RuntimeWarning, match="belongs to fingerprint 'fp'"):
        assert store.get_many("fp2", keys) == {}


def test_a_writer_that_died_mid_write_leaves_nothing_a_reader_sees(tmp_path):
    store = ShardedStore(f"file://{tmp_path}")
    keys = _keys(8)
    store.put_many("fp", {k: _value(k) for k in keys})
    shard = _segments(tmp_path)[0].parent
    (shard / ".tmp-deadbeef").write_bytes(sharded._MAGIC + b"\x10")  # half a segment
    assert set(store.get_many("fp", keys)) == set(keys)


def _hammer(url: str, n_keys: int, seed: int, rounds: int, errors) -> None:
    """Write random subsets of shared keys and check every array read back (one process)."""
    sharded.COMPACT_AFTER = 4  # merges race with writes and reads,
    # in one shard, where every process writes at once
    ShardedStore._shard = lambda self, fp, key: f"{self.root}/{sharded._FORMAT}/{fp}/00"
    rng = np.random.default_rng(seed)
    keys = _keys(n_keys, tag="shared ")
    store = ShardedStore(url)
    for _ in range(rounds):
        chosen = [keys[i] for i in rng.choice(n_keys, 16, replace=False)]
        store.put_many("fp", {k: _value(k) for k in chosen})
        got = store.get_many("fp", keys)
        if not set(chosen) <= set(got):
            errors.put(f"{os.getpid()}: own writes missing")
        if any(not np.array_equal(v, _value(k)) for k, v in got.items()):
            errors.put(f"{os.getpid()}: a wrong array")


def test_four_processes_writing_reading_and_merging_at_once(tmp_path):
    url, n_keys = f"file://{tmp_path}", 64
    ctx = mp.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(url, n_keys, seed, 40, errors))
             for seed in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 4
    assert errors.empty(), errors.get()
    keys = _keys(n_keys, tag="shared ")
    got = ShardedStore(url).get_many("fp", keys)
    assert all(np.array_equal(v, _value(k)) for k, v in got.items())
    assert not list(tmp_path.rglob(".tmp-*")) and not list(tmp_path.rglob("*.corrupt-*"))
    assert max(len(list(d.glob("*.seg"))) for d in {p.parent for p in _segments(tmp_path)}) \
        <= 4 + 4  # merged as they went: at most the limit and one write per process


class ReadOnlyFileSystem:
    """``rofile://``: the local file system where every write is refused, as on a folder
    mounted read-only (root ignores permission bits, so tests cannot use chmod)."""

    @staticmethod
    def register():
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        def refuse(self, *args, **kwargs):
            raise PermissionError(30, "Read-only file system")

        methods = {name: refuse for name in ("mv", "pipe_file", "rm", "makedirs", "mkdir",
                                             "touch", "_open_for_write")}
        cls = type("ReadOnly", (LocalFileSystem,), {
            "protocol": ("rofile",), **methods,
            "_strip_protocol": classmethod(lambda cls, path: LocalFileSystem._strip_protocol(
                path.removeprefix("rofile://")))})
        fsspec.register_implementation("rofile", cls, clobber=True)


def test_a_read_only_folder_with_a_damaged_segment_is_read_and_never_written(tmp_path):
    ReadOnlyFileSystem.register()
    keys = _keys(40)
    ShardedStore(f"file://{tmp_path}").put_many("fp", {k: _value(k) for k in keys})
    damaged = _segments(tmp_path)[0]
    damaged.write_bytes(b"garbage")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    store = ShardedStore(f"rofile://{tmp_path}")
    with pytest.warns(RuntimeWarning, match=r"is damaged \(no segment header\); it could not "
                                            r"be moved aside \(PermissionError\) and is "
                                            r"skipped"):
        got = store.get_many("fp", keys)
    lost = {k for k in keys if k not in got}
    assert lost and all(np.array_equal(got[k], _value(k)) for k in got)  # the rest served
    with pytest.warns(RuntimeWarning, match=r"cannot be written \(PermissionError: .*Read-only"
                                            r".*\); new vectors are kept in this process's "
                                            r"memory only"):
        store.put_many("fp", {k: _value(k) for k in lost})
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written or moved
    assert set(store.get_many("fp", keys)) == set(got)  # the damaged one skipped, quietly


def test_an_encoder_on_a_read_only_url_cache_computes_and_keeps_vectors_in_memory(
        tiny_bert, tmp_path):
    ReadOnlyFileSystem.register()
    reference = EncoderEmbedder(tiny_bert, cache=None).fit(FIXTURE_TEXTS).transform(
        FIXTURE_TEXTS)
    clear_memory_cache()
    embed = EncoderEmbedder(tiny_bert, cache=f"rofile://{tmp_path}/cache").fit(FIXTURE_TEXTS)
    with pytest.warns(RuntimeWarning, match=r"cannot be written"):
        np.testing.assert_array_equal(embed.transform(FIXTURE_TEXTS), reference)
    np.testing.assert_array_equal(transformed_from_cache(embed, FIXTURE_TEXTS), reference)
    assert not (tmp_path / "cache").exists()
