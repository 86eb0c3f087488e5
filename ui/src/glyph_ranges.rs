// Shared by build.rs (`include!`) and the crate (`crate::message`): the
// characters whose glyphs are embedded for the software renderer, before
// the build keeps only those DejaVu Sans has. See ui/README.md, "Fonts".
//
// Inclusive ranges of code points.
pub const GLYPH_RANGES: &[(u32, u32)] = &[
    // Basic Latin, printable.
    (0x20, 0x7E),
    // Latin-1 Supplement, printable (U+00A0 and U+00AD are placeholders).
    (0xA1, 0xAC),
    (0xAE, 0xFF),
    // Latin Extended-A: Central European, Baltic, Turkish, Maltese.
    (0x100, 0x17F),
    // Romanian comma-below letters.
    (0x218, 0x21B),
    // Greek and Coptic (the letters DejaVu Sans has).
    (0x384, 0x3CE),
    // Cyrillic, basic and Ukrainian ґ.
    (0x400, 0x45F),
    (0x490, 0x491),
    // Dashes, quotes, bullets, ellipsis; per mille, single guillemets.
    (0x2010, 0x2027),
    (0x2030, 0x203A),
    // Euro sign, trade mark, arrows.
    (0x20AC, 0x20AC),
    (0x2122, 0x2122),
    (0x2190, 0x2193),
];
