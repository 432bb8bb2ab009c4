//! Vietnamese personal names.
//!
//! Surname weights follow the commonly cited frequencies (Nguyễn about 38%,
//! Trần 11%, Lê 9.5%, Phạm 7%, ...). Every literal is precomposed (NFC):
//! the service normalises claims to NFC, and the registry export it is
//! compared with is NFC too.

use crate::rng::SplitMix64;

/// Surnames with weights in units of 0.1%.
const SURNAMES: &[(&str, u32)] = &[
    ("Nguyễn", 380),
    ("Trần", 110),
    ("Lê", 95),
    ("Phạm", 70),
    // Hoàng and Huỳnh are one name, Vũ and Võ too; see `regional_variant`.
    ("Hoàng", 51),
    ("Phan", 45),
    ("Vũ", 39),
    ("Đặng", 21),
    ("Bùi", 20),
    ("Đỗ", 14),
    ("Hồ", 13),
    ("Ngô", 13),
    ("Dương", 10),
    ("Đinh", 8),
    ("Trương", 7),
    ("Lý", 5),
    ("Lương", 5),
    ("Mai", 5),
    ("Trịnh", 5),
    ("Cao", 4),
    ("Lâm", 4),
    ("Hà", 4),
    ("Đoàn", 4),
    ("Tạ", 3),
    ("Tô", 2),
    ("Chu", 2),
    ("Thái", 2),
    ("Kiều", 1),
    ("Quách", 1),
    ("La", 1),
];

/// Male middle names other than Văn, which is drawn separately because its
/// share falls sharply for people born after 1980.
const MALE_MIDDLE: &[&str] = &[
    "Hữu", "Đức", "Minh", "Quang", "Công", "Thành", "Xuân", "Đình", "Ngọc", "Tuấn", "Hoàng", "Gia",
    "Trọng", "Quốc", "Mạnh", "Thanh", "Anh", "Bảo", "Duy", "Tiến", "Trung", "Việt", "Nhật", "Hải",
];

/// Female middle names other than Thị (drawn separately, like Văn).
const FEMALE_MIDDLE: &[&str] = &[
    "Ngọc", "Thu", "Thanh", "Hồng", "Kim", "Phương", "Bích", "Minh", "Thùy", "Mỹ", "Khánh", "Bảo",
    "Diệu", "Hoài", "Hải", "Lan", "Quỳnh", "Thảo", "Mai", "Tuyết",
];

/// Second middle names after Thị, as in "Nguyễn Thị Thanh Hương".
const FEMALE_SECOND_MIDDLE: &[&str] = &[
    "Thanh", "Ngọc", "Thu", "Kim", "Hồng", "Mỹ", "Bích", "Thùy", "Minh", "Diệu",
];

/// Second middle names after Văn or Hữu, as in "Trần Văn Minh Tuấn".
const MALE_SECOND_MIDDLE: &[&str] = &["Minh", "Quang", "Anh", "Đức", "Thành"];

/// Male given names. Hòa and Khoa are spelt in the common ("new") style
/// (not Hoà, Khóa); the other style exists in real records, and the matching
/// rules must treat both as the same name.
const MALE_GIVEN: &[&str] = &[
    "An", "Anh", "Bảo", "Bình", "Cường", "Chiến", "Dũng", "Duy", "Đạt", "Đức", "Hải", "Hậu",
    "Hiển", "Hiếu", "Hiệp", "Hòa", "Hoàng", "Hùng", "Huy", "Hưng", "Khải", "Khánh", "Khoa", "Kiên",
    "Lâm", "Lộc", "Lợi", "Long", "Lực", "Mạnh", "Minh", "Nam", "Nghĩa", "Nhân", "Phát", "Phong",
    "Phúc", "Phước", "Quân", "Quang", "Sơn", "Tài", "Tâm", "Thái", "Thắng", "Thành", "Thịnh",
    "Tín", "Toàn", "Trí", "Trung", "Tú", "Tuấn", "Tùng", "Việt", "Vinh", "Vũ",
];

/// Female given names. Hòa, Thủy and Thúy are spelt in the common style;
/// "Thuỷ", "Thuý", "Hoà" are real-world variants of the same names.
const FEMALE_GIVEN: &[&str] = &[
    "An", "Anh", "Ánh", "Bích", "Châu", "Chi", "Dung", "Duyên", "Giang", "Hà", "Hạnh", "Hằng",
    "Hậu", "Hiền", "Hoa", "Hòa", "Hồng", "Huệ", "Hương", "Hường", "Huyền", "Lan", "Liên", "Linh",
    "Loan", "Ly", "Mai", "My", "Nga", "Ngân", "Ngọc", "Nhi", "Nhung", "Oanh", "Phương", "Quyên",
    "Quỳnh", "Tâm", "Thảo", "Thu", "Thủy", "Thúy", "Thư", "Trang", "Trinh", "Tuyết", "Uyên", "Vân",
    "Vy", "Xuân", "Yến",
];

/// Hoàng → Huỳnh and Vũ → Võ: the same surnames, spelt the southern way
/// (originally to avoid a royal taboo). Most bearers from Quảng Trị
/// southwards use the southern spelling.
fn regional_variant(surname: &'static str, southern: bool, rng: &mut SplitMix64) -> &'static str {
    let southern_share = if southern { 750 } else { 80 };
    match surname {
        "Hoàng" if rng.chance(southern_share) => "Huỳnh",
        "Vũ" if rng.chance(southern_share) => "Võ",
        other => other,
    }
}

/// A full name: surname, one or two middle names, given name.
///
/// `southern` says whether the family comes from Quảng Trị or further south;
/// older people more often carry Văn / Thị.
pub(crate) fn full_name(
    rng: &mut SplitMix64,
    male: bool,
    birth_year: i32,
    southern: bool,
) -> String {
    let surname = regional_variant(rng.weighted(SURNAMES), southern, rng);
    let traditional = birth_year < 1980;

    let mut middles: Vec<&str> = Vec::with_capacity(2);
    if male {
        let van_share = if traditional { 600 } else { 250 };
        if rng.chance(van_share) {
            middles.push("Văn");
        } else {
            middles.push(rng.pick(MALE_MIDDLE));
        }
        if matches!(middles[0], "Văn" | "Hữu") && rng.chance(60) {
            middles.push(rng.pick(MALE_SECOND_MIDDLE));
        }
    } else {
        let thi_share = if traditional { 700 } else { 350 };
        if rng.chance(thi_share) {
            middles.push("Thị");
            if rng.chance(200) {
                middles.push(rng.pick(FEMALE_SECOND_MIDDLE));
            }
        } else {
            middles.push(rng.pick(FEMALE_MIDDLE));
        }
    }

    let given_names = if male { MALE_GIVEN } else { FEMALE_GIVEN };
    let mut given_index = rng.below(given_names.len() as u64) as usize;
    // "Minh Minh" is not a name: move to the next entry instead of redrawing,
    // so the number of draws (and every later field) does not depend on it.
    if middles.contains(&given_names[given_index]) {
        given_index = (given_index + 1) % given_names.len();
    }
    if middles.contains(&given_names[given_index]) {
        given_index = (given_index + 1) % given_names.len();
    }

    let mut name = String::with_capacity(32);
    name.push_str(surname);
    for middle in middles {
        name.push(' ');
        name.push_str(middle);
    }
    name.push(' ');
    name.push_str(given_names[given_index]);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_large_enough_and_unique() {
        for list in [MALE_GIVEN, FEMALE_GIVEN] {
            assert!(list.len() >= 40);
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len());
        }
    }

    #[test]
    fn names_have_three_or_four_words_and_no_repeated_word() {
        let mut rng = SplitMix64::new(5);
        for i in 0..5000 {
            let name = full_name(&mut rng, i % 2 == 0, 1940 + (i % 68), i % 3 == 0);
            let words: Vec<&str> = name.split(' ').collect();
            assert!((3..=4).contains(&words.len()), "{name}");
            let mut sorted = words[1..].to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), words.len() - 1, "{name}");
        }
    }
}
