from uuid import UUID

from creditledger import errors


def parse_path_id(raw: str, not_found: type[errors.NotFound], label: str) -> UUID:
    """A malformed id in the path is simply an id that names nothing: 404, with a clear reason."""
    try:
        return UUID(raw)
    except ValueError:
        raise not_found(f"'{raw}' is not a valid {label} id (expected a UUID).") from None
