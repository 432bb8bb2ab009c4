//! Provinces, districts, communes and street addresses.
//!
//! Provinces are the 63 of `ekyc_domain::provinces::PROVINCES` (the codes a
//! citizen ID can start with). A few provinces have a table of real
//! districts and communes so that demos show familiar places; the others get
//! plausible names made by hashing the province code, so each province has a
//! fixed fake map that does not depend on the seed. Addresses use the
//! pre-2025 three-level layout (commune, district, province) that most
//! existing cards carry.

use ekyc_domain::provinces::PROVINCES;

use crate::rng::{SplitMix64, mix64};

/// Population weights (roughly hundred thousands, 2019 census) by province
/// code. Births are registered where the parents live, so this is also the
/// distribution of the ID's province prefix.
const POPULATION: &[(&str, u32)] = &[
    ("001", 80),
    ("002", 9),
    ("004", 5),
    ("006", 3),
    ("008", 8),
    ("010", 7),
    ("011", 6),
    ("012", 5),
    ("014", 12),
    ("015", 8),
    ("017", 9),
    ("019", 13),
    ("020", 8),
    ("022", 13),
    ("024", 18),
    ("025", 15),
    ("026", 12),
    ("027", 14),
    ("030", 19),
    ("031", 20),
    ("033", 13),
    ("034", 19),
    ("035", 9),
    ("036", 18),
    ("037", 10),
    ("038", 36),
    ("040", 33),
    ("042", 13),
    ("044", 9),
    ("045", 6),
    ("046", 11),
    ("048", 11),
    ("049", 15),
    ("051", 12),
    ("052", 15),
    ("054", 9),
    ("056", 12),
    ("058", 6),
    ("060", 12),
    ("062", 5),
    ("064", 15),
    ("066", 19),
    ("067", 6),
    ("068", 13),
    ("070", 10),
    ("072", 12),
    ("074", 26),
    ("075", 31),
    ("077", 11),
    ("079", 90),
    ("080", 17),
    ("082", 18),
    ("083", 13),
    ("084", 10),
    ("086", 10),
    ("087", 16),
    ("089", 19),
    ("091", 17),
    ("092", 12),
    ("093", 7),
    ("094", 12),
    ("095", 9),
    ("096", 12),
];

/// Where people who leave their home province move to.
const MIGRATION: &[(&str, u32)] = &[
    ("079", 40),
    ("001", 25),
    ("074", 12),
    ("075", 8),
    ("048", 5),
    ("031", 5),
    ("092", 5),
];

/// The centrally-run cities, addressed as "Thành phố X"; every other
/// province is "Tỉnh X".
const CITIES: &[&str] = &["001", "031", "048", "079", "092"];

/// A province: its ID code and its name as in `PROVINCES`.
#[derive(Clone, Copy)]
pub(crate) struct Province {
    /// Three-digit code, e.g. "079".
    pub(crate) code: &'static str,
    /// Name without prefix, e.g. "Hồ Chí Minh".
    pub(crate) name: &'static str,
}

impl Province {
    fn by_code(code: &str) -> Self {
        let (code, name) = PROVINCES
            .iter()
            .find(|(c, _)| *c == code)
            .copied()
            .unwrap_or_else(|| panic!("province code {code} missing from PROVINCES"));
        Self { code, name }
    }

    /// The name with its administrative prefix, e.g. "Thành phố Hồ Chí Minh".
    pub(crate) fn prefixed(self) -> String {
        if CITIES.contains(&self.code) {
            format!("Thành phố {}", self.name)
        } else {
            format!("Tỉnh {}", self.name)
        }
    }

    /// Quảng Trị and everything south of it (codes are numbered north to
    /// south), where Huỳnh and Võ are the usual spellings.
    pub(crate) fn is_southern(self) -> bool {
        self.code >= "045"
    }

    /// The Mekong delta and the south-east, where hamlets are "Ấp".
    fn uses_ap(self) -> bool {
        self.code >= "070"
    }

    /// The Central Highlands, where hamlets are usually numbered "Thôn N".
    fn is_highlands(self) -> bool {
        ("062"..="068").contains(&self.code)
    }
}

/// A province drawn by population.
pub(crate) fn weighted_province(rng: &mut SplitMix64) -> Province {
    Province::by_code(rng.weighted(POPULATION))
}

/// Where someone born in `home` lives now: mostly the same province,
/// otherwise one of the places people migrate to for work.
pub(crate) fn residence_province(rng: &mut SplitMix64, home: Province) -> Province {
    if rng.chance(650) {
        home
    } else {
        Province::by_code(rng.weighted(MIGRATION))
    }
}

/// A real district with some of its wards and communes (prefixes included).
struct District {
    name: &'static str,
    communes: &'static [&'static str],
}

const fn d(name: &'static str, communes: &'static [&'static str]) -> District {
    District { name, communes }
}

/// Real districts for the provinces a demo is most likely to show.
const REAL_DISTRICTS: &[(&str, &[District])] = &[
    (
        "001",
        &[
            d(
                "Quận Ba Đình",
                &[
                    "Phường Điện Biên",
                    "Phường Kim Mã",
                    "Phường Ngọc Hà",
                    "Phường Quán Thánh",
                    "Phường Liễu Giai",
                ],
            ),
            d(
                "Quận Hoàn Kiếm",
                &[
                    "Phường Hàng Bạc",
                    "Phường Hàng Bông",
                    "Phường Tràng Tiền",
                    "Phường Lý Thái Tổ",
                    "Phường Hàng Trống",
                ],
            ),
            d(
                "Quận Đống Đa",
                &[
                    "Phường Láng Hạ",
                    "Phường Ô Chợ Dừa",
                    "Phường Kim Liên",
                    "Phường Văn Miếu",
                ],
            ),
            d(
                "Quận Cầu Giấy",
                &[
                    "Phường Dịch Vọng",
                    "Phường Nghĩa Đô",
                    "Phường Quan Hoa",
                    "Phường Yên Hòa",
                ],
            ),
            d(
                "Quận Hai Bà Trưng",
                &["Phường Bạch Mai", "Phường Minh Khai", "Phường Lê Đại Hành"],
            ),
            d(
                "Quận Thanh Xuân",
                &[
                    "Phường Khương Trung",
                    "Phường Nhân Chính",
                    "Phường Thanh Xuân Bắc",
                ],
            ),
            d(
                "Huyện Đông Anh",
                &[
                    "Thị trấn Đông Anh",
                    "Xã Uy Nỗ",
                    "Xã Kim Chung",
                    "Xã Vân Nội",
                ],
            ),
            d(
                "Huyện Sóc Sơn",
                &["Xã Phù Linh", "Xã Mai Đình", "Xã Tiên Dược"],
            ),
            d("Huyện Ba Vì", &["Xã Tản Lĩnh", "Xã Vân Hòa", "Xã Ba Trại"]),
        ],
    ),
    (
        "079",
        &[
            d(
                "Quận 1",
                &[
                    "Phường Bến Nghé",
                    "Phường Bến Thành",
                    "Phường Đa Kao",
                    "Phường Nguyễn Thái Bình",
                    "Phường Phạm Ngũ Lão",
                    "Phường Cầu Ông Lãnh",
                    "Phường Cô Giang",
                    "Phường Tân Định",
                ],
            ),
            d(
                "Quận 3",
                &[
                    "Phường Võ Thị Sáu",
                    "Phường 4",
                    "Phường 5",
                    "Phường 9",
                    "Phường 11",
                    "Phường 14",
                ],
            ),
            d(
                "Quận 5",
                &["Phường 1", "Phường 2", "Phường 11", "Phường 12"],
            ),
            d("Quận 10", &["Phường 12", "Phường 14", "Phường 15"]),
            d(
                "Quận Bình Thạnh",
                &["Phường 1", "Phường 2", "Phường 3", "Phường 25", "Phường 26"],
            ),
            d(
                "Quận Gò Vấp",
                &["Phường 1", "Phường 3", "Phường 5", "Phường 10", "Phường 17"],
            ),
            d(
                "Quận Tân Bình",
                &["Phường 2", "Phường 4", "Phường 12", "Phường 15"],
            ),
            d(
                "Thành phố Thủ Đức",
                &[
                    "Phường Thảo Điền",
                    "Phường An Phú",
                    "Phường Linh Trung",
                    "Phường Hiệp Bình Chánh",
                    "Phường Long Thạnh Mỹ",
                ],
            ),
            d(
                "Huyện Củ Chi",
                &[
                    "Thị trấn Củ Chi",
                    "Xã Tân Thạnh Đông",
                    "Xã Phước Vĩnh An",
                    "Xã Trung An",
                ],
            ),
            d(
                "Huyện Bình Chánh",
                &["Xã Vĩnh Lộc A", "Xã Bình Hưng", "Xã Tân Kiên"],
            ),
        ],
    ),
    (
        "036",
        &[
            d(
                "Thành phố Nam Định",
                &[
                    "Phường Trần Hưng Đạo",
                    "Phường Vị Xuyên",
                    "Phường Năng Tĩnh",
                ],
            ),
            d(
                "Huyện Hải Hậu",
                &[
                    "Xã Hải Thanh",
                    "Xã Hải Anh",
                    "Xã Hải Hà",
                    "Xã Hải Minh",
                    "Thị trấn Yên Định",
                ],
            ),
            d(
                "Huyện Giao Thủy",
                &["Xã Giao Thiện", "Xã Giao Tân", "Thị trấn Ngô Đồng"],
            ),
            d(
                "Huyện Xuân Trường",
                &["Xã Xuân Hồng", "Xã Xuân Ngọc", "Thị trấn Xuân Trường"],
            ),
            d("Huyện Nghĩa Hưng", &["Xã Nghĩa Lạc", "Xã Nghĩa Thành"]),
            d("Huyện Ý Yên", &["Xã Yên Phong", "Xã Yên Lợi"]),
        ],
    ),
    (
        "048",
        &[
            d(
                "Quận Hải Châu",
                &[
                    "Phường Thạch Thang",
                    "Phường Hải Châu I",
                    "Phường Phước Ninh",
                    "Phường Hòa Cường Bắc",
                ],
            ),
            d(
                "Quận Thanh Khê",
                &["Phường Tân Chính", "Phường Chính Gián", "Phường Xuân Hà"],
            ),
            d(
                "Quận Sơn Trà",
                &["Phường An Hải Bắc", "Phường Phước Mỹ", "Phường Mân Thái"],
            ),
            d("Quận Ngũ Hành Sơn", &["Phường Mỹ An", "Phường Khuê Mỹ"]),
            d(
                "Huyện Hòa Vang",
                &["Xã Hòa Phong", "Xã Hòa Tiến", "Xã Hòa Nhơn"],
            ),
        ],
    ),
    (
        "031",
        &[
            d(
                "Quận Hồng Bàng",
                &["Phường Hoàng Văn Thụ", "Phường Minh Khai"],
            ),
            d("Quận Lê Chân", &["Phường An Biên", "Phường Dư Hàng"]),
            d("Quận Ngô Quyền", &["Phường Máy Tơ", "Phường Lạch Tray"]),
            d(
                "Huyện Thủy Nguyên",
                &["Xã Lập Lễ", "Xã Thủy Sơn", "Thị trấn Núi Đèo"],
            ),
            d("Huyện Vĩnh Bảo", &["Xã Tam Cường", "Thị trấn Vĩnh Bảo"]),
        ],
    ),
    (
        "092",
        &[
            d(
                "Quận Ninh Kiều",
                &[
                    "Phường Tân An",
                    "Phường An Cư",
                    "Phường Xuân Khánh",
                    "Phường Hưng Lợi",
                ],
            ),
            d("Quận Bình Thủy", &["Phường Bình Thủy", "Phường Long Hòa"]),
            d("Quận Cái Răng", &["Phường Lê Bình", "Phường Hưng Phú"]),
            d("Huyện Phong Điền", &["Xã Nhơn Ái", "Thị trấn Phong Điền"]),
        ],
    ),
    (
        "038",
        &[
            d(
                "Thành phố Thanh Hóa",
                &["Phường Điện Biên", "Phường Ba Đình", "Phường Đông Thọ"],
            ),
            d(
                "Huyện Hoằng Hóa",
                &["Xã Hoằng Đạt", "Xã Hoằng Quỳ", "Thị trấn Bút Sơn"],
            ),
            d("Huyện Quảng Xương", &["Xã Quảng Nhân", "Xã Quảng Ninh"]),
            d("Huyện Nông Cống", &["Xã Trung Chính", "Thị trấn Nông Cống"]),
            d("Huyện Thọ Xuân", &["Xã Xuân Lập", "Thị trấn Thọ Xuân"]),
        ],
    ),
    (
        "040",
        &[
            d(
                "Thành phố Vinh",
                &["Phường Hưng Bình", "Phường Lê Lợi", "Phường Quang Trung"],
            ),
            d(
                "Huyện Nam Đàn",
                &["Xã Kim Liên", "Xã Nam Giang", "Thị trấn Nam Đàn"],
            ),
            d(
                "Huyện Diễn Châu",
                &["Xã Diễn Kỷ", "Xã Diễn Hồng", "Thị trấn Diễn Châu"],
            ),
            d("Huyện Quỳnh Lưu", &["Xã Quỳnh Hồng", "Xã Quỳnh Bá"]),
            d("Huyện Đô Lương", &["Xã Đà Sơn", "Thị trấn Đô Lương"]),
        ],
    ),
];

/// Syllables that Vietnamese place names are commonly built from.
const PLACE_SYLLABLES: &[&str] = &[
    "An", "Bình", "Phú", "Tân", "Hòa", "Thạnh", "Long", "Hưng", "Đông", "Tây", "Nam", "Bắc",
    "Thuận", "Vĩnh", "Xuân", "Yên", "Hải", "Thanh", "Quảng", "Đức", "Phước", "Mỹ", "Lộc", "Sơn",
    "Trung", "Hiệp", "Thịnh", "Khánh", "Lợi", "Hậu", "Điền", "Hà", "Lạc", "Định", "Phong", "Thái",
    "Cẩm", "Tiên", "Kim", "Châu",
];

/// Streets named after people and events, found in most Vietnamese cities.
const STREETS: &[&str] = &[
    "Lê Lợi",
    "Trần Hưng Đạo",
    "Nguyễn Huệ",
    "Hai Bà Trưng",
    "Lý Thường Kiệt",
    "Lê Duẩn",
    "Nguyễn Trãi",
    "Quang Trung",
    "Điện Biên Phủ",
    "Hùng Vương",
    "Trần Phú",
    "Phan Chu Trinh",
    "Nguyễn Du",
    "Lê Thánh Tông",
    "Phan Đình Phùng",
    "Võ Thị Sáu",
    "Cách Mạng Tháng Tám",
    "Nguyễn Thị Minh Khai",
    "Bà Triệu",
    "Lê Hồng Phong",
    "Ngô Quyền",
    "Nguyễn Văn Cừ",
    "Trường Chinh",
    "Lạc Long Quân",
    "Âu Cơ",
    "Tôn Đức Thắng",
    "Hoàng Văn Thụ",
    "Phạm Văn Đồng",
    "Võ Văn Kiệt",
    "Nguyễn Chí Thanh",
    "Lê Văn Sỹ",
    "Xô Viết Nghệ Tĩnh",
    "Bạch Đằng",
    "3 Tháng 2",
    "30 Tháng 4",
];

/// Districts a province without a real table is given: one city, one town
/// and six rural districts.
const GENERATED_DISTRICTS: u64 = 8;
/// Wards or communes per generated district.
const GENERATED_COMMUNES: u64 = 12;

/// A two-syllable place name, a pure function of `key`.
fn place_name(key: u64) -> String {
    let n = PLACE_SYLLABLES.len() as u64;
    let h = mix64(key);
    let first = (h % n) as usize;
    let mut second = ((h / n) % n) as usize;
    if second == first {
        second = (second + 1) % PLACE_SYLLABLES.len();
    }
    format!("{} {}", PLACE_SYLLABLES[first], PLACE_SYLLABLES[second])
}

/// A key unique to (province, district, commune) for `place_name`.
fn place_key(province: Province, district: u64, commune: u64) -> u64 {
    // Codes are three ASCII digits; parsing cannot fail for PROVINCES.
    let code: u64 = province.code.parse().unwrap_or(0);
    0x706c_6163_6500_0000 | (code << 16) | (district << 8) | commune
}

/// A commune (ward, township or rural commune) and its district.
pub(crate) struct Locality {
    /// With prefix: "Phường Bến Nghé", "Thị trấn Yên Định", "Xã Hải Thanh".
    pub(crate) commune: String,
    /// With prefix: "Quận 1", "Huyện Hải Hậu", "Thành phố Vinh".
    pub(crate) district: String,
}

impl Locality {
    /// Wards and townships have streets; rural communes have hamlets.
    fn is_urban(&self) -> bool {
        !self.commune.starts_with("Xã ")
    }
}

/// A commune in `province`, from the real table when there is one.
pub(crate) fn locality(rng: &mut SplitMix64, province: Province) -> Locality {
    if let Some((_, districts)) = REAL_DISTRICTS.iter().find(|(c, _)| *c == province.code) {
        let district = &districts[rng.below(districts.len() as u64) as usize];
        let commune = rng.pick(district.communes);
        return Locality {
            commune: commune.to_owned(),
            district: district.name.to_owned(),
        };
    }
    // Same two draws as the branch above, so the rest of the record does
    // not shift with the choice of table.
    let district = rng.below(GENERATED_DISTRICTS);
    let commune = rng.below(GENERATED_COMMUNES);
    let district_name = place_name(place_key(province, district, 0xff));
    let commune_name = place_name(place_key(province, district, commune));
    match district {
        0 => Locality {
            commune: format!("Phường {commune_name}"),
            district: format!("Thành phố {district_name}"),
        },
        1 => Locality {
            commune: format!("Phường {commune_name}"),
            district: format!("Thị xã {district_name}"),
        },
        // The township usually shares the district's name.
        _ if commune == 0 => Locality {
            commune: format!("Thị trấn {district_name}"),
            district: format!("Huyện {district_name}"),
        },
        _ => Locality {
            commune: format!("Xã {commune_name}"),
            district: format!("Huyện {district_name}"),
        },
    }
}

/// Place of origin (quê quán), written in one of the styles real records
/// use: fully prefixed, without the province prefix, or district only.
pub(crate) fn place_of_origin(rng: &mut SplitMix64, province: Province) -> String {
    let place = locality(rng, province);
    match rng.below(4) {
        0 | 1 => format!(
            "{}, {}, {}",
            place.commune,
            place.district,
            province.prefixed()
        ),
        2 => format!("{}, {}, {}", place.commune, place.district, province.name),
        _ => format!("{}, {}", place.district, province.prefixed()),
    }
}

/// Place of residence: a street address in wards and townships, a hamlet
/// in rural communes.
pub(crate) fn place_of_residence(rng: &mut SplitMix64, province: Province) -> String {
    let place = locality(rng, province);
    // Drawn unconditionally so every record uses the same number of draws.
    let number = rng.between(1, 350);
    let alley = rng.between(1, 60);
    let style = rng.below(4);
    let street = rng.pick(STREETS);
    let hamlet_key = rng.next_u64();

    let first = if place.is_urban() {
        if style == 0 {
            format!("Số {number}/{alley} Đường {street}")
        } else {
            format!("Số {number} Đường {street}")
        }
    } else if province.uses_ap() {
        format!("Ấp {}", place_name(hamlet_key))
    } else if province.is_highlands() || style == 0 {
        format!("Thôn {}", alley % 15 + 1)
    } else if style == 1 {
        format!("Xóm {}", alley % 15 + 1)
    } else {
        format!("Thôn {}", place_name(hamlet_key))
    };
    format!(
        "{first}, {}, {}, {}",
        place.commune,
        place.district,
        province.prefixed()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_province_has_a_weight_and_every_table_code_exists() {
        assert_eq!(POPULATION.len(), PROVINCES.len());
        for (code, _) in PROVINCES {
            assert!(POPULATION.iter().any(|(c, _)| c == code), "{code}");
        }
        for (code, _) in POPULATION.iter().chain(MIGRATION) {
            let _ = Province::by_code(code);
        }
        for (code, _) in REAL_DISTRICTS {
            let _ = Province::by_code(code);
        }
        for code in CITIES {
            let _ = Province::by_code(code);
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(Province::by_code("079").prefixed(), "Thành phố Hồ Chí Minh");
        assert_eq!(Province::by_code("036").prefixed(), "Tỉnh Nam Định");
        assert_eq!(Province::by_code("001").prefixed(), "Thành phố Hà Nội");
    }

    #[test]
    fn addresses_have_four_or_three_parts() {
        let mut rng = SplitMix64::new(11);
        for (code, _) in PROVINCES {
            let province = Province::by_code(code);
            for _ in 0..20 {
                let home = place_of_residence(&mut rng, province);
                assert_eq!(home.split(", ").count(), 4, "{home}");
                assert!(home.ends_with(&province.prefixed()), "{home}");
                let origin = place_of_origin(&mut rng, province);
                assert!((2..=3).contains(&origin.split(", ").count()), "{origin}");
                assert!(origin.ends_with(province.name), "{origin}");
            }
        }
    }
}
