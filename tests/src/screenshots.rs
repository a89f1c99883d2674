//! Screenshots of pages at a desktop and a phone width, kept under the
//! target dir (`<target>/console-screenshots/`) for a person to look at.

use std::path::{Path, PathBuf};

use crate::webdriver::{Browser, Result};

/// The widths [`screenshot_both_widths`] takes, with the height of each
/// window, in CSS pixels.
pub const DESKTOP: (u32, u32) = (1280, 800);
pub const PHONE: (u32, u32) = (320, 640);

/// `$CARGO_TARGET_DIR`, else the target dir this test was built into.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test> -> target
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_owned()))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Where the screenshots go: `<target>/console-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    target_dir().join("console-screenshots")
}

/// The file for `name` at `width`: `<dir>/NAME-WIDTH.png`, `name` kept to
/// letters, digits, `-` and `_`.
pub fn screenshot_path(name: &str, width: u32) -> PathBuf {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    screenshot_dir().join(format!("{name}-{width}.png"))
}

/// Screenshots the whole current page at 1280 and at 320 CSS pixels wide
/// (`NAME-1280.png`, `NAME-320.png`), then puts the window back as it was;
/// the two files.
pub fn screenshot_both_widths(browser: &Browser, name: &str) -> Result<[PathBuf; 2]> {
    let size = browser.execute("return [window.innerWidth, window.innerHeight];", &[])?;
    let was = |i: usize| {
        size.get(i)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let shot = |(width, height): (u32, u32)| -> Result<PathBuf> {
        browser.set_window_size(width, height)?;
        let path = screenshot_path(name, width);
        browser.full_page_screenshot_png(&path)?;
        Ok(path)
    };
    let desktop = shot(DESKTOP)?;
    let phone = shot(PHONE)?;
    if let (Some(w), Some(h)) = (was(0), was(1)) {
        browser.set_window_size(w, h)?;
    }
    Ok([desktop, phone])
}

/// The width and height a PNG file says it has, or why it is not a PNG.
pub fn png_size(path: &Path) -> std::result::Result<(u32, u32), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) || bytes.get(12..16) != Some(b"IHDR") {
        return Err(format!("{} is not a PNG", path.display()));
    }
    let be = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    match (be(16), be(20)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!("{} is a cut-short PNG", path.display())),
    }
}
