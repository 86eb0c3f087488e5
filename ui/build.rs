//! Compiles the `.slint` screens into Rust, with glyphs of DejaVu Sans
//! embedded for the software renderer (a static device binary has no
//! fontconfig and no font files).
//!
//! The font is not kept in this repository: it is read at build time from
//! Debian's `fonts-dejavu-core` (or from the directory in `OTC_UI_FONT_DIR`).

use std::path::PathBuf;

/// Pixel sizes the screens use (see `Theme` in screens/theme.slint). Glyphs
/// are pre-rendered at exactly these sizes, so text is never scaled.
const FONT_SIZES: &str = "14,16,18,20,22,26,28,32,40,44";

fn main() {
    println!("cargo:rerun-if-changed=screens");
    println!("cargo:rerun-if-env-changed=OTC_UI_FONT_DIR");
    let font_dir = std::env::var_os("OTC_UI_FONT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/fonts/truetype/dejavu"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let fonts = out.join("fonts");
    std::fs::create_dir_all(&fonts).expect("create OUT_DIR/fonts");
    for name in ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf"] {
        let src = font_dir.join(name);
        if !src.is_file() {
            panic!(
                "otc-ui needs the DejaVu Sans font at {} to embed its glyphs: \
                 install fonts-dejavu-core (apt-get install fonts-dejavu-core) \
                 or set OTC_UI_FONT_DIR to a directory holding {name}",
                src.display()
            );
        }
        println!("cargo:rerun-if-changed={}", src.display());
        let dst = fonts.join(name);
        std::fs::copy(&src, &dst).expect("copy font into OUT_DIR");
        // Keep the source's mtime on the copy: the Slint compiler tells cargo
        // to watch the copy, and cargo counts a file newer than the build
        // script's start as changed, so a fresh mtime rebuilt otc-ui (and
        // everything above it) on every build.
        if let Ok(mtime) = std::fs::metadata(&src).and_then(|m| m.modified()) {
            let _ = std::fs::File::options()
                .write(true)
                .open(&dst)
                .and_then(|f| f.set_modified(mtime));
        }
    }
    // SAFETY: the build script is single-threaded; the Slint compiler reads
    // this variable to know which glyph sizes to pre-render.
    unsafe { std::env::set_var("SLINT_FONT_SIZES", FONT_SIZES) };
    let config = slint_build::CompilerConfiguration::new()
        .embed_resources(slint_build::EmbedResourcesKind::EmbedForSoftwareRenderer)
        .with_include_paths(vec![fonts]);
    if let Err(e) = slint_build::compile_with_config("screens/app.slint", config) {
        panic!("compiling the .slint screens failed: {e}");
    }
}
