import multiprocessing as mp
import os
import sqlite3
from typing import ClassVar

import joblib
import numpy as np
import pytest
from sklearn.base import clone

from conftest import FIXTURE_TEXTS, ForwardCounter, transformed_from_cache
from skstack import EncoderEmbedder
from skstack.cache import (
    _DB_NAME,
    EmbeddingStore,
    Lookup,
    MemoryStore,
    SQLiteStore,
    _checksum,
    _is_busy,
    _is_damage,
    clear_memory_cache,
    text_key,
)


@pytest.fixture(autouse=True)
def _fresh_memory():
    clear_memory_cache()
    yield
    clear_memory_cache()


def test_clone_hits_the_cache(tiny_bert):
    emb = EncoderEmbedder(tiny_bert, batch_size=4).fit(FIXTURE_TEXTS)
    counter = ForwardCounter(emb.model_)
    first = emb.transform(FIXTURE_TEXTS)
    assert counter.calls == 4  # 14 texts in batches of 4
    twin = clone(emb).fit(FIXTURE_TEXTS)
    np.testing.assert_array_equal(twin.transform(FIXTURE_TEXTS), first)
    assert counter.calls == 4
    twin.transform([*FIXTURE_TEXTS, "one new text", "one new text"])
    assert counter.calls == 5  # only the new text, once
    counter.remove()


def test_joblib_round_trip_hits_the_cache(tiny_bert, tmp_path):
    emb = EncoderEmbedder(tiny_bert).fit(FIXTURE_TEXTS)
    first = emb.transform(FIXTURE_TEXTS)
    joblib.dump(emb, tmp_path / "emb.joblib")
    loaded = joblib.load(tmp_path / "emb.joblib")
    counter = ForwardCounter(loaded.model_)
    np.testing.assert_array_equal(loaded.transform(FIXTURE_TEXTS), first)
    assert counter.calls == 0


def test_a_changed_setting_never_reuses_vectors(tiny_bert):
    mean = EncoderEmbedder(tiny_bert).fit(FIXTURE_TEXTS)
    mean.transform(FIXTURE_TEXTS)
    cls = EncoderEmbedder(tiny_bert, pooling="cls").fit(FIXTURE_TEXTS)
    counter = ForwardCounter(cls.model_)
    cls.transform(FIXTURE_TEXTS)
    assert counter.calls > 0
    assert cls.fingerprint_ != mean.fingerprint_
    counter.remove()


def test_disk_cache_is_found_by_a_new_embedder(tiny_bert, tmp_path):
    first = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(FIXTURE_TEXTS).transform(FIXTURE_TEXTS)
    clear_memory_cache()
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(FIXTURE_TEXTS)
    counter = ForwardCounter(emb.model_)
    np.testing.assert_array_equal(emb.transform(FIXTURE_TEXTS), first)
    assert counter.calls == 0
    counter.remove()


def test_corrupt_entry_is_detected_and_recomputed(tiny_bert, tmp_path):
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path, batch_size=64).fit(FIXTURE_TEXTS)
    expected = emb.transform(FIXTURE_TEXTS)
    with sqlite3.connect(tmp_path / _DB_NAME) as conn:
        rows = conn.execute("SELECT rowid, data FROM arrays LIMIT 2").fetchall()
        conn.execute("UPDATE arrays SET data = ? WHERE rowid = ?", (rows[0][1][:-8], rows[0][0]))
        flipped = bytes([rows[1][1][0] ^ 0xFF]) + rows[1][1][1:]
        conn.execute("UPDATE arrays SET data = ? WHERE rowid = ?", (flipped, rows[1][0]))
    clear_memory_cache()
    counter = ForwardCounter(emb.model_)
    np.testing.assert_array_equal(emb.transform(FIXTURE_TEXTS), expected)
    assert counter.calls == 1  # the two damaged entries, recomputed in one batch
    counter.remove()


def test_swapped_payloads_are_not_served_under_the_wrong_text(tiny_bert, tmp_path):
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(FIXTURE_TEXTS)
    expected = emb.transform(FIXTURE_TEXTS)
    with sqlite3.connect(tmp_path / _DB_NAME) as conn:
        (a, data_a, sum_a), (b, data_b, sum_b) = conn.execute(
            "SELECT rowid, data, checksum FROM arrays LIMIT 2").fetchall()
        # each row gets the other's payload together with its valid checksum
        conn.execute("UPDATE arrays SET data = ?, checksum = ? WHERE rowid = ?", (data_b, sum_b, a))
        conn.execute("UPDATE arrays SET data = ?, checksum = ? WHERE rowid = ?", (data_a, sum_a, b))
    clear_memory_cache()
    counter = ForwardCounter(emb.model_)
    np.testing.assert_array_equal(emb.transform(FIXTURE_TEXTS), expected)
    assert counter.calls == 1  # both rows failed their checksum and were recomputed
    counter.remove()


def test_unreadable_cache_file_is_kept_aside_and_replaced(tiny_bert, tmp_path):
    (tmp_path / _DB_NAME).write_bytes(b"this is not a database" * 100)
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path / "").fit(FIXTURE_TEXTS)
    with pytest.warns(RuntimeWarning, match="is damaged"):
        Z = emb.transform(FIXTURE_TEXTS)
    assert Z.shape == (len(FIXTURE_TEXTS), 32)
    assert list(tmp_path.glob(f"{_DB_NAME}.corrupt-*"))


def _embed_in_process(model_dir, folder, texts, queue):
    emb = EncoderEmbedder(model_dir, cache=folder, batch_size=2).fit(texts)
    for start in range(0, len(texts), 3):  # many small transactions, interleaving
        emb.transform(texts[start : start + 3])
    queue.put(emb.fingerprint_)


def test_two_processes_writing_one_disk_cache_leave_no_corrupt_entry(tiny_bert, tmp_path):
    texts = [f"{t} {i}" for i, t in enumerate(FIXTURE_TEXTS * 4)]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_embed_in_process, args=(tiny_bert, str(tmp_path), part, queue))
             for part in (texts, texts[::-1])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0]
    fingerprints = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(fingerprints) == 1
    with sqlite3.connect(tmp_path / _DB_NAME) as conn:
        rows = conn.execute("SELECT * FROM arrays").fetchall()
    assert len(rows) == len(texts)
    assert all(_checksum(fp, key, dtype, shape, data) == checksum
               for fp, key, dtype, shape, checksum, data in rows)
    reference = EncoderEmbedder(tiny_bert, cache=None).fit(texts).transform(texts)
    clear_memory_cache()
    cached = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(texts).transform(texts)
    np.testing.assert_allclose(cached, reference, atol=1e-5)


def test_memory_store_is_bounded_and_drops_the_least_recently_used():
    store = MemoryStore(max_bytes=3 * 16)  # room for three 4-float vectors
    vectors = {bytes([i]): np.full(4, i, dtype=np.float32) for i in range(3)}
    store.put_many("fp", vectors)
    assert store.get_many("fp", [b"\x00"])  # key 0 is now the most recently used
    store.put_many("fp", {b"\x03": np.full(4, 3, dtype=np.float32)})
    assert sorted(store.get_many("fp", [bytes([i]) for i in range(4)])) == [
        b"\x00", b"\x02", b"\x03"]
    assert store.nbytes == 48 and len(store) == 3
    store.clear("fp")
    assert store.nbytes == 0 and len(store) == 0


class DictStore(EmbeddingStore):
    """A backend written the way a user adds one: a subclass with a scheme, nothing else."""

    scheme = "dict-test"
    shared: ClassVar[dict] = {}

    def __init__(self, location):
        self.items = self.shared.setdefault(location, {})

    def get_many(self, fingerprint, keys):
        return {k: self.items[(fingerprint, k)] for k in keys if (fingerprint, k) in self.items}

    def put_many(self, fingerprint, items):
        self.items.update({(fingerprint, k): v for k, v in items.items()})

    def clear(self, fingerprint=None):
        self.items.clear()


def test_a_new_backend_is_one_subclass_selected_by_its_scheme(tiny_bert):
    emb = EncoderEmbedder(tiny_bert, cache="dict-test://here").fit(FIXTURE_TEXTS)
    first = emb.transform(FIXTURE_TEXTS)
    assert len(DictStore.shared["here"]) == len(set(FIXTURE_TEXTS))
    clear_memory_cache()
    counter = ForwardCounter(emb.model_)
    np.testing.assert_array_equal(emb.transform(FIXTURE_TEXTS), first)  # from the new store
    assert counter.calls == 0
    counter.remove()
    with pytest.raises(ValueError, match=r"No cache store is registered for 'nope://'"):
        EncoderEmbedder(tiny_bert, cache="nope://x").fit(FIXTURE_TEXTS).transform(["a"])


def test_lookup_fills_faster_stores_from_slower_ones():
    fast, slow = MemoryStore(), MemoryStore()
    slow.put_many("fp", {text_key("b"): np.ones(2, dtype=np.float32)})
    lookup = Lookup(["a", "b", "a"], "fp", [fast, slow])
    assert lookup.missing == ["a"]
    assert fast.get_many("fp", [text_key("b")])  # promoted
    out = lookup.complete(np.array([[5.0, 6.0]]))
    np.testing.assert_array_equal(np.stack(out), [[5, 6], [1, 1], [5, 6]])
    assert slow.get_many("fp", [text_key("a")]) and fast.get_many("fp", [text_key("a")])
    with pytest.raises(ValueError, match="2 arrays for 1 missing texts"):
        Lookup(["c"], "fp", [fast]).complete(np.zeros((2, 2)))


def _as_new_process():
    """Forget what this process knows of disk caches, as a fresh process would."""
    for conn, _ in SQLiteStore._connections.values():
        conn.close()
    SQLiteStore._connections.clear()
    for state in (SQLiteStore._read_only, SQLiteStore._unusable, SQLiteStore._warned):
        state.clear()
    clear_memory_cache()


@pytest.fixture
def cached_texts(tiny_bert, tmp_path):
    """200 texts embedded into a disk cache in tmp_path, and their vectors."""
    texts = [f"{FIXTURE_TEXTS[i % len(FIXTURE_TEXTS)]} number {i}" for i in range(200)]
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(texts)
    expected = emb.transform(texts)
    _as_new_process()
    yield texts, expected
    _as_new_process()


def test_damage_found_after_opening_is_healed(tiny_bert, tmp_path, cached_texts):
    texts, expected = cached_texts
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(texts)
    np.testing.assert_array_equal(emb.transform(texts[:5]), expected[:5])  # opened, healthy
    path = tmp_path / _DB_NAME
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2 // 4096 * 4096  # a page boundary in the middle of the file
    raw[middle : middle + 1024] = b"\xa5" * 1024
    path.write_bytes(bytes(raw))
    clear_memory_cache()
    with pytest.warns(RuntimeWarning, match="is damaged"):
        np.testing.assert_array_equal(emb.transform(texts), expected)
    assert len(list(tmp_path.glob(f"{_DB_NAME}.corrupt-*"))) == 1
    _as_new_process()  # later processes find a healthy cache holding every text
    again = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(texts)
    np.testing.assert_array_equal(transformed_from_cache(again, texts), expected)


def test_a_busy_database_is_not_taken_for_damage(tmp_path):
    store = SQLiteStore(tmp_path)
    store.put_many("fp", {b"k": np.ones(2, np.float32)})
    holder = sqlite3.connect(tmp_path / _DB_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiting = sqlite3.connect(tmp_path / _DB_NAME, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked") as info:
        waiting.execute("BEGIN IMMEDIATE")  # a second writer
    assert _is_busy(info.value) and not _is_damage(info.value)
    holder.execute("ROLLBACK")
    holder.close()
    waiting.close()


def _open_together(folder, barrier, queue):
    import warnings

    barrier.wait()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SQLiteStore(folder).put_many("fp", {bytes([os.getpid() % 256]): np.ones(3, np.float32)})
    queue.put([str(w.message) for w in caught])


def test_processes_opening_a_new_cache_at_once_never_move_it_aside(tmp_path):
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_open_together, args=(str(tmp_path), barrier, queue))
             for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 6
    assert [queue.get(timeout=5) for _ in procs] == [[]] * 6  # no warning anywhere
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_read_only_folder_is_read_and_never_moved_aside(tiny_bert, tmp_path, cached_texts,
                                                         monkeypatch):
    texts, expected = cached_texts
    real_connect = sqlite3.connect

    def read_only_connect(database, *args, uri=False, **kwargs):
        if not uri:  # what SQLite says where the folder may not be written
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_connect(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", read_only_connect)
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(texts)
    counter = ForwardCounter(emb.model_)
    np.testing.assert_array_equal(emb.transform(texts), expected)
    assert counter.calls == 0  # every vector came from the read-only file
    with pytest.warns(RuntimeWarning, match="can be read but not written"):
        new = emb.transform(["a text that is not cached"])
    assert new.shape == (1, 32)
    emb.transform(["another one"])  # one warning per process, not per call
    assert not list(tmp_path.glob("*.corrupt-*"))
    counter.remove()


def test_an_unusable_cache_folder_falls_back_to_memory_with_one_warning(tiny_bert, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("I am a file")
    emb = EncoderEmbedder(tiny_bert, cache=not_a_folder).fit(FIXTURE_TEXTS)
    with pytest.warns(RuntimeWarning, match="cannot be used") as caught:
        Z = emb.transform(FIXTURE_TEXTS)
    assert len(caught) == 1
    reference = EncoderEmbedder(tiny_bert, cache=None).fit(FIXTURE_TEXTS)
    np.testing.assert_array_equal(Z, reference.transform(FIXTURE_TEXTS))
    assert not_a_folder.read_text() == "I am a file"


def test_a_cache_file_deleted_while_open_keeps_later_writes(tiny_bert, tmp_path):
    emb = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(FIXTURE_TEXTS)
    emb.transform(FIXTURE_TEXTS[:3])
    for path in tmp_path.glob(f"{_DB_NAME}*"):
        path.unlink()
    later = emb.transform(FIXTURE_TEXTS[3:6])
    _as_new_process()
    again = EncoderEmbedder(tiny_bert, cache=tmp_path).fit(FIXTURE_TEXTS)
    counter = ForwardCounter(again.model_)
    np.testing.assert_array_equal(again.transform(FIXTURE_TEXTS[3:6]), later)
    assert counter.calls == 0
    counter.remove()


def test_one_disk_store_serves_several_threads(tmp_path):
    # a joblib threading backend or a Dask worker's thread pool calls from other threads
    from concurrent.futures import ThreadPoolExecutor

    store = SQLiteStore(tmp_path)
    store.put_many("fp", {text_key("main"): np.ones(2, dtype=np.float32)})

    def round_trip(i: int) -> np.ndarray:
        store.put_many("fp", {text_key(str(i)): np.full(2, i, dtype=np.float32)})
        return store.get_many("fp", [text_key(str(i)), text_key("main")])

    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(round_trip, range(8)))
    for i, got in enumerate(found):
        np.testing.assert_array_equal(got[text_key(str(i))], [i, i])
        np.testing.assert_array_equal(got[text_key("main")], [1, 1])
