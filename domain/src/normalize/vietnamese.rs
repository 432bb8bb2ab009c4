//! Vietnamese-specific text rules: canonical tone-mark placement and the
//! diacritic-insensitive fold.
//!
//! Vietnamese writes one tone mark per syllable, and two conventions for where
//! it sits are both in daily use ("Hòa" and "Hoà", "Thủy" and "Thuỷ"). A
//! registry typed in one convention and a claim typed in the other must still
//! give the same exact form, so every syllable is taken apart and its tone put
//! back by one rule (documented on [`canonical_tones`]). Anything that does not
//! parse as a Vietnamese syllable is left exactly as it was, because moving
//! marks in a foreign word would change its spelling rather than its style.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Combining grave (huyền).
const GRAVE: char = '\u{300}';
/// Combining acute (sắc).
const ACUTE: char = '\u{301}';
/// Combining tilde (ngã).
const TILDE: char = '\u{303}';
/// Combining hook above (hỏi).
const HOOK: char = '\u{309}';
/// Combining dot below (nặng).
const DOT_BELOW: char = '\u{323}';
/// Combining circumflex (â, ê, ô).
const CIRCUMFLEX: char = '\u{302}';
/// Combining breve (ă).
const BREVE: char = '\u{306}';
/// Combining horn (ơ, ư).
const HORN: char = '\u{31b}';

/// Initial consonant clusters of a Vietnamese syllable ("" for none). `gi` and
/// `qu` are matched before this table because they contain a vowel letter.
const INITIALS: &[&str] = &[
    "", "b", "c", "ch", "d", "đ", "g", "gh", "h", "k", "kh", "l", "m", "n", "ng", "ngh", "nh", "p",
    "ph", "r", "s", "t", "th", "tr", "v", "x",
];

/// Final consonants of a Vietnamese syllable ("" for none).
const FINALS: &[&str] = &["", "c", "ch", "m", "n", "ng", "nh", "p", "t"];

/// Vowel nuclei (without tone, with quality marks) of Vietnamese syllables,
/// after an initial `gi`/`qu` has been taken off.
const NUCLEI: &[&str] = &[
    "a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "y", //
    "ai", "ao", "au", "ay", "âu", "ây", "eo", "êu", "ia", "iê", "iu", "oa", "oă", "oe", "oi", "oo",
    "ôi", "ơi", "ua", "uâ", "uê", "ui", "uô", "uơ", "uy", "ưa", "ưi", "ươ", "ưu", "yê", //
    "iêu", "oai", "oao", "oay", "oeo", "uây", "uôi", "uya", "uyê", "uyu", "ươi", "ươu", "yêu",
];

/// Two-vowel nuclei that, without a final consonant, take the tone on the
/// second vowel (the "new style": hoà, khoẻ, thuỷ).
const SECOND_VOWEL_PAIRS: &[&str] = &["oa", "oe", "uy"];

fn is_tone(c: char) -> bool {
    matches!(c, GRAVE | ACUTE | TILDE | HOOK | DOT_BELOW)
}

fn is_vowel(base: char) -> bool {
    matches!(base, 'a' | 'e' | 'i' | 'o' | 'u' | 'y')
}

/// One letter of a syllable in decomposed form.
#[derive(Clone, Copy)]
struct Letter {
    /// The base letter (NFD never splits `đ`, so it is a base letter too).
    base: char,
    /// Circumflex, breve or horn, if any.
    quality: Option<char>,
    /// The tone mark, if this letter carries it.
    tone: Option<char>,
}

impl Letter {
    /// The letter without its tone, as one precomposed character, or `None`
    /// when the base and quality mark do not form a Vietnamese letter.
    fn toneless(self) -> Option<char> {
        Some(match (self.base, self.quality) {
            (b, None) => b,
            ('a', Some(BREVE)) => 'ă',
            ('a', Some(CIRCUMFLEX)) => 'â',
            ('e', Some(CIRCUMFLEX)) => 'ê',
            ('o', Some(CIRCUMFLEX)) => 'ô',
            ('o', Some(HORN)) => 'ơ',
            ('u', Some(HORN)) => 'ư',
            _ => return None,
        })
    }
}

/// Apply [`canonical_syllable`] to every maximal run of letters and combining
/// marks in `text`; everything else (spaces, hyphens, digits, punctuation) is
/// copied unchanged. `text` must already be NFC and lowercase.
///
/// The tone rule, applied to a word that parses as one Vietnamese syllable
/// (initial consonant, vowel nucleus of one to three vowels, final consonant,
/// all from the fixed tables above, with `gi` and `qu` counted as initial
/// consonants when a vowel follows) and carries exactly one tone mark on a
/// vowel letter:
///
/// 1. if a nucleus vowel carries a quality mark (ă â ê ô ơ ư), the tone goes
///    on the last such vowel (so on ơ in ươ);
/// 2. else if the nucleus is one vowel, on that vowel;
/// 3. else if a final consonant follows, on the last nucleus vowel;
/// 4. else if the nucleus is `oa`, `oe` or `uy`, on the second vowel;
/// 5. else if the nucleus is two vowels, on the first;
/// 6. else (three vowels), on the middle one.
pub(super) fn canonical_tones(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphabetic() || is_combining_mark(c) {
            word.push(c);
        } else {
            flush_word(&mut out, &mut word);
            out.push(c);
        }
    }
    flush_word(&mut out, &mut word);
    out
}

fn flush_word(out: &mut String, word: &mut String) {
    if word.is_empty() {
        return;
    }
    match canonical_syllable(word) {
        Some(canonical) => out.push_str(&canonical),
        None => out.push_str(word),
    }
    word.clear();
}

/// The syllable with its tone re-placed, in NFC, or `None` if `word` is not a
/// Vietnamese syllable with exactly one tone mark (then it stays as it is).
fn canonical_syllable(word: &str) -> Option<String> {
    let mut letters: Vec<Letter> = Vec::with_capacity(word.len());
    let mut tones = 0usize;
    for c in word.nfd() {
        if is_combining_mark(c) {
            let letter = letters.last_mut()?;
            if is_tone(c) {
                tones += 1;
                letter.tone = Some(c);
            } else if matches!(c, CIRCUMFLEX | BREVE | HORN) {
                // A second quality mark is not Vietnamese. A tone mark above
                // written *before* a circumflex or breve (both stack above the
                // letter) is a different glyph from the Vietnamese letter, so
                // it is not ours to reinterpret either.
                let tone_above_first = letter.tone.is_some_and(|t| t != DOT_BELOW) && c != HORN;
                if letter.quality.is_some() || tone_above_first {
                    return None;
                }
                letter.quality = Some(c);
            } else {
                return None;
            }
        } else {
            letters.push(Letter {
                base: c,
                quality: None,
                tone: None,
            });
        }
    }
    if tones != 1 {
        return None;
    }
    let toned = letters.iter().position(|l| l.tone.is_some())?;
    if !is_vowel(letters[toned].base) {
        return None;
    }
    let tone = letters[toned].tone?;
    let symbols: Vec<char> = letters
        .iter()
        .map(|l| l.toneless())
        .collect::<Option<_>>()?;

    let (nucleus_start, nucleus_end) = parse_syllable(&letters, &symbols)?;
    let nucleus = &letters[nucleus_start..nucleus_end];
    let nucleus_symbols: String = symbols[nucleus_start..nucleus_end].iter().collect();
    let has_final = nucleus_end < letters.len();

    let in_nucleus = if let Some(i) = nucleus.iter().rposition(|l| l.quality.is_some()) {
        i
    } else if nucleus.len() == 1 {
        0
    } else if has_final {
        nucleus.len() - 1
    } else if SECOND_VOWEL_PAIRS.contains(&nucleus_symbols.as_str()) {
        1
    } else if nucleus.len() == 2 {
        0
    } else {
        1
    };
    let target = nucleus_start + in_nucleus;

    let mut decomposed = String::with_capacity(word.len() + 4);
    for (i, letter) in letters.iter().enumerate() {
        decomposed.push(letter.base);
        // Quality before tone: both may stack above the letter, and only this
        // order composes to the precomposed Vietnamese letter under NFC.
        if let Some(q) = letter.quality {
            decomposed.push(q);
        }
        if i == target {
            decomposed.push(tone);
        }
    }
    Some(decomposed.nfc().collect())
}

/// Split a syllable into initial, nucleus and final; returns the nucleus as a
/// range of letter indices, or `None` if any part is not Vietnamese.
fn parse_syllable(letters: &[Letter], symbols: &[char]) -> Option<(usize, usize)> {
    let n = letters.len();
    let starts_with = |a: char, b: char| n > 2 && symbols[0] == a && symbols[1] == b;
    // `qu` and `gi` are consonants spelled with a vowel letter: "quà" is q-u-à
    // with nucleus "a", "già" is gi-à. Before a consonant (or at the end), the
    // i of "gi" is the nucleus itself: "gìn", "gì".
    let start = if starts_with('q', 'u') || (starts_with('g', 'i') && is_vowel(letters[2].base)) {
        2
    } else {
        let consonants = letters.iter().take_while(|l| !is_vowel(l.base)).count();
        let initial: String = symbols[..consonants].iter().collect();
        if !INITIALS.contains(&initial.as_str()) {
            return None;
        }
        consonants
    };
    let vowels = letters[start..]
        .iter()
        .take_while(|l| is_vowel(l.base))
        .count();
    let end = start + vowels;
    let nucleus: String = symbols[start..end].iter().collect();
    if !NUCLEI.contains(&nucleus.as_str()) {
        return None;
    }
    let last: String = symbols[end..].iter().collect();
    if !FINALS.contains(&last.as_str()) {
        return None;
    }
    Some((start, end))
}

/// The diacritic-insensitive form: NFD, every combining mark removed, `đ`
/// mapped to `d` (it has no decomposition), then NFC again so that scripts
/// whose NFD splits letters into letters (Hangul) come back together. `text`
/// must already be lowercase.
pub(super) fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| if c == 'đ' { 'd' } else { c })
        .nfc()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tones(s: &str) -> String {
        canonical_tones(&s.nfc().collect::<String>())
    }

    #[test]
    fn tables_are_nfc() {
        for s in INITIALS.iter().chain(FINALS).chain(NUCLEI) {
            assert_eq!(s.nfc().collect::<String>(), *s);
        }
    }

    #[test]
    fn old_and_new_style_agree() {
        for (a, b) in [
            ("hòa", "hoà"),
            ("thủy", "thuỷ"),
            ("khỏe", "khoẻ"),
            ("hóa", "hoá"),
            ("tùy", "tuỳ"),
            ("qúa", "quá"),
            ("gìa", "già"),
            ("ngòai", "ngoài"),
            ("khủyu", "khuỷu"),
        ] {
            assert_eq!(tones(a), tones(b), "variant pair {a}");
            assert_eq!(tones(b), b, "new style is canonical for {b}");
        }
    }

    #[test]
    fn standard_spellings_are_fixed_points() {
        for w in [
            "tuấn",
            "nguyễn",
            "trường",
            "thị",
            "ngọc",
            "quỳnh",
            "giang",
            "khuê",
            "hoàng",
            "toàn",
            "huỳnh",
            "uyển",
            "mỹ",
            "của",
            "hải",
            "thảo",
            "ngoại",
            "thuở",
            "bùi",
            "lợi",
            "tuệ",
            "quế",
            "lưu",
            "khiêm",
            "yến",
            "gìn",
            "giữ",
            "giỏi",
            "giới",
            "rượu",
            "mía",
            "chịu",
            "túi",
            "quý",
            "quạ",
            "hoặc",
            "tuyết",
            "goòng",
            "đoàn",
            "phường",
            "huyện",
            "quận",
            "nội",
        ] {
            assert_eq!(tones(w), w, "{w}");
        }
    }

    #[test]
    fn non_syllables_are_untouched() {
        // Two tones, foreign letters, tone on a consonant, foreign clusters,
        // wrong quality marks and tone-before-circumflex stay as written.
        for w in [
            "hòà",
            "jòa",
            "ǹa",
            "strà",
            "léa",
            "aè",
            "îa",
            "e\u{300}\u{302}",
            "josé",
        ] {
            let nfc: String = w.nfc().collect();
            assert_eq!(canonical_tones(&nfc), nfc, "{w}");
        }
    }

    /// A syllable built from the tables, as NFD letters without a tone.
    fn syllable() -> impl Strategy<Value = String> {
        let initial = proptest::sample::select(
            INITIALS
                .iter()
                .copied()
                .chain(["gi", "qu"])
                .collect::<Vec<_>>(),
        );
        (
            initial,
            proptest::sample::select(NUCLEI.to_vec()),
            proptest::sample::select(FINALS.to_vec()),
        )
            .prop_map(|(i, n, f)| format!("{i}{n}{f}").nfd().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Wherever on the vowels the tone is written, the syllable has one
        /// canonical form, which carries the tone on a vowel and is a fixed
        /// point.
        #[test]
        fn tone_position_does_not_matter(
            word in syllable(),
            tone in proptest::sample::select(vec![GRAVE, ACUTE, TILDE, HOOK, DOT_BELOW]),
        ) {
            let chars: Vec<char> = word.chars().collect();
            let mut forms = Vec::new();
            for (i, c) in chars.iter().enumerate() {
                if !is_vowel(*c) {
                    continue;
                }
                // The tone goes after the vowel's own quality mark, if any.
                let mut at = i + 1;
                while chars.get(at).is_some_and(|m| matches!(*m, CIRCUMFLEX | BREVE | HORN)) {
                    at += 1;
                }
                let mut variant = chars.clone();
                variant.insert(at, tone);
                let variant: String = variant.into_iter().collect();
                let nfc: String = variant.nfc().collect();
                let canonical = canonical_syllable(&nfc);
                prop_assert!(canonical.is_some(), "{:?} did not parse", nfc);
                forms.push(canonical);
            }
            prop_assert!(forms.windows(2).all(|w| w[0] == w[1]), "{:?}", forms);
            if let Some(Some(canonical)) = forms.first() {
                prop_assert_eq!(canonical_tones(canonical), canonical.clone());
            }
        }
    }

    #[test]
    fn fold_strips_marks_and_stroke() {
        assert_eq!(fold("nguyễn văn ân"), "nguyen van an");
        assert_eq!(fold("đặng đức"), "dang duc");
    }
}
