"""Canonical model figures: map + validate 1,000,000 contacts, polars + pandera vs plain pandas.

    .venv/bin/python benchmarks/canonical.py [--contacts 1000000]

The raw contacts come from the sandbox generator (a third per CRM, each in its own format) and are
written to Parquet first. Each phase then runs in a fresh process, so its peak RSS is its own:

- polars mapping: ``apply_mapping`` for the three CRMs (data/mappings/*.yaml), concatenated;
- pandera validation: ``validate_entity`` on that table (one pandera call);
- pandas mapping and pandas validation: the same transforms and the same rules written in plain
  pandas (same phone rule: vectorized shapes + the phonenumbers library for the rest), checked to
  produce the same canonical values and the same rejected rows.

Each phase runs five times in its process (the first, cold, included): the median and the best
are printed, as timings on a shared machine vary by tens of percent from run to run.

Needs pandas (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import in_child, timed


# ---------------------------------------------------------------- input
def generate(contacts: int, directory: Path) -> dict:
    from sync_platform.ingest.sandbox_raw import raw_frame
    from sync_platform.sandbox.state import SandboxConfig, SandboxState

    per_crm = -(-contacts // 3)
    state = SandboxState(SandboxConfig(contacts=per_crm))
    paths = {}
    for crm in ("salesforce", "hubspot", "dynamics"):
        path = directory / f"raw_{crm}_contacts.parquet"
        raw_frame(state, crm, "contacts").write_parquet(path)
        paths[crm] = str(path)
    return {"paths": paths}


def _digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- polars + pandera
def polars_map(paths: dict[str, str], out: str) -> dict:
    import polars as pl

    from sync_platform.canonical.mapping import apply_mapping, load_mappings

    mappings = load_mappings()
    raws = {crm: pl.read_parquet(path) for crm, path in paths.items()}
    loaded = _rss_mb()

    def run() -> tuple:
        results = [apply_mapping(mappings[crm], "contact", raw) for crm, raw in raws.items()]
        return results, pl.concat([r.frame for r in results])

    timing, (results, frame) = timed(run)
    frame.write_parquet(out)
    return {
        **timing,
        "rows": frame.height,
        "rss_loaded_mb": loaded,
        "ignored": sum(r.ignored_count for r in results),
        "failures": sum(r.conversion_failures.height for r in results),
    }


def pandera_validate(mapped: str) -> dict:
    import polars as pl

    from sync_platform.canonical.mapping import load_mappings
    from sync_platform.canonical.quality import validate_entity

    required = {crm: m.required_fields("contact") for crm, m in load_mappings().items()}
    frame = pl.read_parquet(mapped)
    loaded = _rss_mb()
    timing, outcome = timed(lambda: validate_entity("contact", frame, required))
    rejected = sorted(outcome.rejected["source_id"].to_list())
    return {
        **timing,
        "rss_loaded_mb": loaded,
        "rejected": len(rejected),
        "rules": outcome.rule_counts(),
        "rejected_ids_hash": _digest(rejected),
    }


# ---------------------------------------------------------------- plain pandas
def _pd_blank_to_na(s):
    return s.where(s.str.len() > 0)


def _pd_phones(s, region: str):
    """The same rule as sync_platform.canonical.mapping.phones.normalize_phones, in pandas."""
    import pandas as pd

    from sync_platform.canonical.mapping.phones import (
        COUNTRY_CODES_BY_LENGTH,
        FORMATTING,
        country_rules,
        region_country_code,
        to_e164,
    )

    home = country_rules(region_country_code(region))
    cleaned = s.str.strip()
    for char in FORMATTING:
        cleaned = cleaned.str.replace(char, "", regex=False)
    international = cleaned.str.fullmatch(r"\+[0-9]+").fillna(False).astype(bool)
    national = cleaned.str.fullmatch(r"[0-9]+").fillna(False).astype(bool)
    digits = cleaned.str.slice(1)
    code = pd.Series(pd.NA, index=s.index, dtype="str")
    nsn = cleaned.where(national)
    for n, codes in COUNTRY_CODES_BY_LENGTH.items():
        head = digits.str.slice(0, n)
        hit = international & code.isna() & head.isin(codes)
        code = code.mask(hit, head)
        nsn = nsn.mask(hit, digits.str.slice(n))
    code = code.mask(national, home.country_code)

    def starts(pattern: str | None):
        return nsn.str.match(f"(?:{pattern})").fillna(False).astype(bool) if pattern else False

    zero = nsn.str.startswith("0").fillna(False).astype(bool)
    decided = (
        national
        & ~zero
        & ~nsn.str.startswith(home.country_code).fillna(False).astype(bool)
        & ~starts(home.national_prefix)
        & ~starts(home.international_prefix)
    )
    valid = pd.Series(False, index=s.index)
    for value in code.dropna().unique():
        rules = country_rules(int(value))
        if rules is None:
            continue
        mine = (code == value).fillna(False).astype(bool)
        decided |= mine & international & ~zero & ~starts(rules.national_prefix)
        valid |= mine & nsn.str.fullmatch(f"(?:{rules.general_pattern})").fillna(False).astype(bool)
    valid &= nsn.str.len().between(2, 17).fillna(False).astype(bool)
    e164 = ("+" + code + nsn).where(decided & valid)
    fallback = s.notna() & ~decided
    decided_by_library = {raw: to_e164(raw, region) for raw in s[fallback].dropna().unique()}
    return e164.mask(fallback, s[fallback].map(decided_by_library))


def _pd_normalize(name: str, s, region: str):
    if name == "phone_e164":
        return _pd_phones(s, region)
    s = s.str.strip()
    if name in ("email", "lower"):
        s = s.str.lower()
    elif name == "upper":
        s = s.str.upper()
    elif name == "name":  # as the polars normalizer: rewrite only the names that need it
        needs_collapse = s.str.contains(r"\s\s|[^\S ]").fillna(False).astype(bool)
        s = s.mask(needs_collapse, s[needs_collapse].str.replace(r"\s+", " ", regex=True))
    elif name != "trim":
        raise ValueError(f"the baseline covers the contact mappings' normalizers, not {name}")
    return _pd_blank_to_na(s)


def _pd_map(mapping, raw):
    """One CRM's contacts through its mapping file, in pandas: the engine's semantics, field by field."""
    import pandas as pd

    from sync_platform.canonical.model import CONTACT

    spec = mapping.entity("contact")
    out = pd.DataFrame(index=raw.index)
    out["source_system"] = mapping.crm
    out["source_id"] = raw[spec.source_id].astype("str")
    failures = []
    for field in CONTACT.fields:
        fs = spec.fields.get(field.name)
        if fs is None or fs.source is None:
            out[field.name] = pd.Series(
                fs.default if fs else None,
                index=raw.index,
                dtype="boolean" if field.type == "boolean" else "str",
            )
            continue
        source = raw[fs.source]
        present = source.notna() & (source.str.strip().str.len() > 0 if source.dtype == "str" else True)
        value = source
        if fs.normalize:
            value = _pd_normalize(fs.normalize, value.astype("str"), mapping.phone_region)
        if fs.values is not None:
            value = value.astype("str").map(fs.values)
            if fs.unmapped is not None:
                value = value.where(value.notna() | source.isna(), fs.unmapped)
        if field.type == "datetime":
            value = value.dt.tz_convert("UTC")
        elif field.type == "boolean":
            value = value.astype("boolean")
        failures.append(int((present & value.isna()).sum()))
        if fs.default is not None:
            value = value.where(present, fs.default)
        out[field.name] = value
    out["deleted_at"] = raw[spec.deleted_at].dt.tz_convert("UTC")
    out["mapping_version"] = mapping.version
    return out, sum(failures)


def pandas_map(paths: dict[str, str], out: str) -> dict:
    import pandas as pd

    from sync_platform.canonical.mapping import load_mappings

    mappings = load_mappings()
    raws = {crm: pd.read_parquet(path) for crm, path in paths.items()}
    loaded = _rss_mb()

    def run() -> tuple:
        mapped = [_pd_map(mappings[crm], raw) for crm, raw in raws.items()]
        return mapped, pd.concat([m for m, _ in mapped], ignore_index=True)

    timing, (mapped, frame) = timed(run)
    frame.to_parquet(out)
    return {**timing, "rows": len(frame), "rss_loaded_mb": loaded, "failures": sum(f for _, f in mapped)}


def _pd_validate(frame, required: dict) -> tuple:
    """The contact model's rules (sync_platform.canonical.quality.models) in pandas: (good, rejected)."""
    import pandas as pd

    from sync_platform.canonical.model import E164_PATTERN, EMAIL_PATTERN, LIFECYCLE_STAGES, SOURCE_SYSTEMS

    live = frame["deleted_at"].isna()

    def malformed(column: str, pattern: str):
        return live & frame[column].notna() & ~frame[column].str.contains(pattern).fillna(False)

    rules = {
        "source_system isin": ~frame["source_system"].isin(SOURCE_SYSTEMS),
        "source_id str_length": frame["source_id"].isna() | (frame["source_id"].str.len() < 1),
        "mapping_version >= 1": ~(frame["mapping_version"] >= 1),
        "multiple_fields_uniqueness": frame.duplicated(["source_system", "source_id"], keep=False),
        "email_format": malformed("email", EMAIL_PATTERN),
        "phone_e164": malformed("phone", E164_PATTERN),
        "lifecycle isin": live & ~frame["lifecycle_stage"].isin(LIFECYCLE_STAGES),
        "created_not_after_updated": live & (frame["created_at"] > frame["updated_at"]).fillna(False),
    }
    for column in ("lifecycle_stage", "email_opt_out", "updated_at"):
        rules[f"not_nullable {column}"] = live & frame[column].isna()
    for crm, fields in required.items():
        for column in fields:
            missing = live & (frame["source_system"] == crm) & frame[column].isna()
            rules[f"required_by_mapping {crm} {column}"] = missing
    failures = pd.concat(
        [
            pd.DataFrame({"row": frame.index[mask], "rule": rule})
            for rule, mask in rules.items()
            if mask.any()
        ],
        ignore_index=True,
    )
    rejected_rows = failures["row"].unique()
    return frame.drop(index=rejected_rows), frame.loc[rejected_rows]


def pandas_validate(mapped: str) -> dict:
    import pandas as pd

    from sync_platform.canonical.mapping import load_mappings

    required = {crm: m.required_fields("contact") for crm, m in load_mappings().items()}
    frame = pd.read_parquet(mapped)
    loaded = _rss_mb()
    timing, (good, rejected) = timed(lambda: _pd_validate(frame, required))
    ids = sorted(rejected["source_id"].tolist())
    return {
        **timing,
        "rss_loaded_mb": loaded,
        "rejected": len(ids),
        "good": len(good),
        "rejected_ids_hash": _digest(ids),
    }


# ---------------------------------------------------------------- report
def same_values(polars_path: str, pandas_path: str) -> bool:
    import polars as pl

    ours = pl.read_parquet(polars_path)
    theirs = pl.read_parquet(pandas_path).select(ours.columns).cast(ours.schema)
    return ours.equals(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="canonical-bench-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        # in a child too: Linux carries the RSS of the forking parent into a child's ru_maxrss,
        # so the parent must stay small for the phases' peaks to be their own
        paths = in_child(generate, args.contacts, directory)["paths"]
        print(
            f"raw input: {args.contacts:,} contacts from the sandbox generator (a third per CRM) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        polars_out, pandas_out = str(directory / "polars.parquet"), str(directory / "pandas.parquet")
        pm = in_child(polars_map, paths, polars_out)
        pv = in_child(pandera_validate, polars_out)
        dm = in_child(pandas_map, paths, pandas_out)
        dv = in_child(pandas_validate, polars_out)
        identical = same_values(polars_out, pandas_out)
    rows = pm["rows"]
    print(
        f"\n{'phase':<22} {'median s':>9} {'best s':>7} {'rows/s':>11} {'peak RSS MB':>12} "
        f"{'after loading input':>20}"
    )
    for name, r in (
        ("polars mapping", pm),
        ("pandera validation", pv),
        ("pandas mapping", dm),
        ("pandas validation", dv),
    ):
        print(
            f"{name:<22} {r['seconds']:>9.2f} {r['best']:>7.2f} {rows / r['seconds']:>11,.0f} "
            f"{r['peak_rss_mb']:>12,.0f} {r['rss_loaded_mb']:>20,.0f}"
        )
    print()
    for label, key in (("median", "seconds"), ("best", "best")):
        polars_total, pandas_total = pm[key] + pv[key], dm[key] + dv[key]
        print(
            f"map + validate, {label} of 5: polars/pandera {polars_total:.2f} s, "
            f"pandas {pandas_total:.2f} s: "
            f"polars {pandas_total / polars_total:.1f}x faster (target >= 5x; mapping "
            f"{dm[key] / pm[key]:.1f}x, validation {dv[key] / pv[key]:.1f}x)"
        )
    print(f"pandas canonical values == polars canonical values: {identical}")
    same_rejected = pv["rejected_ids_hash"] == dv["rejected_ids_hash"]
    print(
        f"same rejected rows: {same_rejected} ({pv['rejected']:,} rejected: "
        f"{pv['rules']}); conversion failures: polars {pm['failures']}, pandas {dm['failures']}; "
        f"ignored raw columns (3 CRMs): {pm['ignored']}"
    )


if __name__ == "__main__":
    main()
