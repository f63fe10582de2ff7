"""``--write``: the found devices' ``[[meters]]`` tables appended to the site's config,
only once the config with them still loads (a typo'd profile never lands in the file).
The file's own text is kept as it is; what is added says where it came from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gateway.commission.report import Report, config_snippet
from gateway.errors import ConfigError
from gateway.settings import load_config

__all__ = ["write_snippet"]


def write_snippet(config_file: Path, report: Report, report_name: str) -> int:
    """Append the report's devices that the config does not hold yet; how many."""
    from edge.assembly import assemble  # the gateway's own check of a config

    text = config_file.read_text()
    held = {m.meter_id for m in load_config(config_file).settings.meters}
    new = tuple(r for r in report.devices
                if r.meter_id not in held and r.device.profile is not None)
    if not new:
        return 0
    block = config_snippet(new)
    addition = (f"\n# Added by `ami-gateway commission` at {report.created_at} (report "
                f"{report_name}): set each meter_id to the utility's id for the meter.\n"
                f"{block}")
    combined = text.rstrip("\n") + "\n" + addition
    # Checked in a file beside it (relative paths in the config resolve the same way).
    fd, scratch = tempfile.mkstemp(prefix=".commission-", suffix=".toml",
                                   dir=config_file.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(combined)
        assemble(load_config(Path(scratch)))  # profiles and buses checked as at start
    except ConfigError as exc:
        raise ConfigError(f"the config with the found devices would not load: {exc}",
                          file=str(config_file), key="meters",
                          fix="paste the snippet from the report by hand and correct it") from exc
    finally:
        Path(scratch).unlink(missing_ok=True)
    os.replace(config_file, config_file.with_name(config_file.name + ".bak"))
    config_file.write_text(combined)
    return len(new)
