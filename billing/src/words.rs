//! Amounts in Vietnamese words, as a Vietnamese invoice writes its total
//! ("Số tiền viết bằng chữ": "Hai mươi sáu nghìn đồng").
//!
//! The number is read in groups of three digits from the left, each
//! followed by its scale word (`nghìn` 10³, `triệu` 10⁶, `tỷ` 10⁹; above
//! that the part before `tỷ` is read again, so 10¹² is `một nghìn tỷ`).
//! Within a group of hundreds h, tens t and units u:
//!
//! - a group after the first is read in full, so its hundreds are said
//!   even when zero (`không trăm`): 1 005 is `một nghìn không trăm linh
//!   năm`; a group that is all zeros is left out with its scale word
//!   (1 000 005 is `một triệu không trăm linh năm`);
//! - tens zero and units not: `linh` before the unit (`một trăm linh
//!   năm`; the Northern `linh`, as the national standard writes it,
//!   rather than the Southern `lẻ`);
//! - tens one: `mười`; other tens: the digit and `mươi` (`hai mươi`);
//! - after `mươi` (tens 2 to 9) a unit one is `mốt` and four is `tư`
//!   (`hai mươi mốt`, `hai mươi tư`); after any tens a unit five is `lăm`
//!   (`mười lăm`, `hai mươi lăm`); a unit alone, or after `linh`, keeps its
//!   name (`năm`, `một trăm linh một`, `một trăm linh bốn`).
//!
//! Zero is `không`. The first letter is capitalised and the currency word
//! follows: [`vnd_in_words`] says `đồng`.

const DIGITS: [&str; 10] = [
    "không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín",
];

/// `amount` đồng in words, capitalised: `Hai mươi sáu nghìn đồng`.
pub fn vnd_in_words(amount: u64) -> String {
    let mut words = number_in_words(amount);
    words.push_str(" đồng");
    capitalise(&words)
}

/// A whole number in lowercase Vietnamese words (see the module docs).
pub fn number_in_words(n: u64) -> String {
    if n == 0 {
        return DIGITS[0].to_string();
    }
    let mut parts = Vec::new();
    read(n, true, &mut parts);
    parts.join(" ")
}

/// Appends the words of `n` (> 0); `leading` when nothing is said before
/// it, so its first group needs no `không trăm`.
fn read(n: u64, leading: bool, out: &mut Vec<&'static str>) {
    const BILLION: u64 = 1_000_000_000;
    let (above, below) = (n / BILLION, n % BILLION);
    let mut leading = leading;
    if above > 0 {
        read(above, leading, out);
        out.push("tỷ");
        leading = false;
    }
    let groups = [
        (below / 1_000_000, Some("triệu")),
        (below / 1_000 % 1_000, Some("nghìn")),
        (below % 1_000, None),
    ];
    for (group, scale) in groups {
        if group == 0 {
            continue;
        }
        read_group(group as usize, leading, out);
        leading = false;
        if let Some(scale) = scale {
            out.push(scale);
        }
    }
}

/// Appends one group of three digits (1 to 999).
fn read_group(group: usize, leading: bool, out: &mut Vec<&'static str>) {
    let (h, t, u) = (group / 100, group / 10 % 10, group % 10);
    if h > 0 || !leading {
        out.push(DIGITS[h]);
        out.push("trăm");
    }
    match t {
        0 if u == 0 => return,
        0 if h > 0 || !leading => out.push("linh"),
        0 => {}
        1 => out.push("mười"),
        _ => {
            out.push(DIGITS[t]);
            out.push("mươi");
        }
    }
    out.push(match (t, u) {
        (2..=9, 1) => "mốt",
        (2..=9, 4) => "tư",
        (1..=9, 5) => "lăm",
        (1..=9, 0) => return,
        _ => DIGITS[u],
    });
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_cases() {
        for (n, words) in [
            (0, "không"),
            (1, "một"),
            (4, "bốn"),
            (5, "năm"),
            (10, "mười"),
            (11, "mười một"),
            (14, "mười bốn"),
            (15, "mười lăm"),
            (20, "hai mươi"),
            (21, "hai mươi mốt"),
            (24, "hai mươi tư"),
            (25, "hai mươi lăm"),
            (55, "năm mươi lăm"),
            (91, "chín mươi mốt"),
            (100, "một trăm"),
            (101, "một trăm linh một"),
            (104, "một trăm linh bốn"),
            (105, "một trăm linh năm"),
            (110, "một trăm mười"),
            (111, "một trăm mười một"),
            (115, "một trăm mười lăm"),
            (121, "một trăm hai mươi mốt"),
            (999, "chín trăm chín mươi chín"),
            (1_000, "một nghìn"),
            (1_005, "một nghìn không trăm linh năm"),
            (1_010, "một nghìn không trăm mười"),
            (1_024, "một nghìn không trăm hai mươi tư"),
            (1_100, "một nghìn một trăm"),
            (10_000, "mười nghìn"),
            (15_000, "mười lăm nghìn"),
            (21_000, "hai mươi mốt nghìn"),
            (26_000, "hai mươi sáu nghìn"),
            (100_000, "một trăm nghìn"),
            (105_000, "một trăm linh năm nghìn"),
            (1_000_000, "một triệu"),
            (1_000_005, "một triệu không trăm linh năm"),
            (1_001_000, "một triệu không trăm linh một nghìn"),
            (2_500_000, "hai triệu năm trăm nghìn"),
            (1_000_000_000, "một tỷ"),
            (1_000_000_001, "một tỷ không trăm linh một"),
            (
                1_234_567_891,
                "một tỷ hai trăm ba mươi tư triệu năm trăm sáu mươi bảy nghìn tám trăm chín mươi mốt",
            ),
            (5_000_000_000_000, "năm nghìn tỷ"),
            (1_000_001_000_000, "một nghìn tỷ không trăm linh một triệu"),
        ] {
            assert_eq!(number_in_words(n), words, "{n}");
        }
    }

    #[test]
    fn totals_read_as_invoices_write_them() {
        assert_eq!(vnd_in_words(26_000), "Hai mươi sáu nghìn đồng");
        assert_eq!(vnd_in_words(0), "Không đồng");
        assert_eq!(
            vnd_in_words(2_750_000),
            "Hai triệu bảy trăm năm mươi nghìn đồng"
        );
        // The largest amount a u64 holds reads without a panic.
        let max = vnd_in_words(u64::MAX); // 18 446 744 073 709 551 615
        assert!(
            max.starts_with("Mười tám tỷ bốn trăm bốn mươi sáu triệu"),
            "{max}"
        );
        assert!(max.ends_with("sáu trăm mười lăm đồng"), "{max}");
    }
}
