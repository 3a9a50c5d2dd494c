"""Store implements every method of the LogStore contract with the same parameters."""
import inspect

from mesh.storage.log_store import LogStore
from mesh.storage.store import Store


def _methods(cls) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(cls).items()
            if callable(fn) and not name.startswith("_")}


def test_store_implements_every_log_store_method_with_the_same_parameters():
    contract = _methods(LogStore)
    assert {"append", "truncate_after", "read_entries", "last_entry", "save_snapshot"} <= set(contract)
    for name, sig in contract.items():
        impl = getattr(Store, name, None)
        assert impl is not None, f"Store lacks {name}"
        assert list(inspect.signature(impl).parameters) == list(sig.parameters), name


def test_every_contract_method_has_a_docstring():
    for name in _methods(LogStore):
        assert (getattr(LogStore, name).__doc__ or "").strip(), f"LogStore.{name} has no contract"
