"""A catalog's build recipe: where its rows came from, recorded in the manifest so the same
update can be run again later ("Update this catalog" in the app) without the original command."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.catalog import Catalog, CatalogError, load_catalog
from core.sample import sample_catalog


@dataclass(frozen=True)
class Recipe:
    """The catalog flags of a build (paths or URIs as given), or the sample's size."""

    images: str | None = None
    captions: str | None = None
    parquet: tuple[str, ...] = ()
    id_column: str = "id"
    caption_column: str | None = None
    filename_column: str | None = None
    sample: int | None = None
    limit: int | None = None
    models: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "parquet": list(self.parquet), "models": list(self.models)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        try:
            values = {**data, "parquet": tuple(data.get("parquet", ())), "models": tuple(data.get("models", ()))}
            return cls(**values)
        except TypeError as err:
            raise CatalogError(f"The index's recorded build recipe cannot be read ({err}); run the build command.") from err

    def catalog(self, name: str) -> Catalog:
        """The catalog as it is now at the recorded source."""
        if self.sample is not None:
            return sample_catalog(self.sample)
        return load_catalog(
            images=self.images, captions=self.captions, parquet=list(self.parquet), id_column=self.id_column,
            caption_column=self.caption_column, filename_column=self.filename_column, name=name,
        )
