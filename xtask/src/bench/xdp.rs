//! ns/packet of the real XDP program: runs the `ha-agent` bench target `xdp` (it times the
//! program with BPF_PROG_TEST_RUN and writes its rows with `--json`) and keeps every row.
use anyhow::{Context, Result};

use super::results::{Results, XdpCase};
use crate::cmd::{self, Cmd};

pub fn run(res: &mut Results) -> Result<()> {
    let out = tempfile::NamedTempFile::new().context("creating a temp file for the XDP rows")?;
    Cmd::new("cargo")
        .current_dir(cmd::workspace_root()?)
        .args(["bench", "--quiet", "-p", "ha-agent", "--bench", "xdp", "--", "--json"])
        .arg(out.path())
        .run()
        .context("the XDP benchmark failed")?;
    let text = std::fs::read_to_string(out.path()).context("reading the XDP benchmark's rows")?;
    res.xdp = parse(&text)?;
    Ok(())
}

fn parse(text: &str) -> Result<Vec<XdpCase>> {
    serde_json::from_str(text).context("parsing the XDP benchmark's --json output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_with_extra_fields() -> Result<()> {
        let rows = parse(
            r#"[{"case":"heartbeat (recorded)","measured_ns":148.0,"program_ns":112.0,"loop_ns":36.0,"target_ns":250},
                {"case":"heartbeat, authenticated","measured_ns":400.0,"program_ns":364.0,"loop_ns":36.0,"target_ns":500,"auth":true}]"#,
        )?;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].case, "heartbeat, authenticated");
        Ok(())
    }
}
