//! Message languages: Chinese (the default of the original product), English and Japanese.

use serde::Deserialize;

/// A language messages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Zh,
    En,
    Ja,
}

impl Lang {
    /// Returns the language of a tag such as `zh-CN`, `en` or `ja-JP`, ignoring the region.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Self::Zh),
            "en" => Some(Self::En),
            "ja" => Some(Self::Ja),
            _ => None,
        }
    }

    /// Picks the supported language an `Accept-Language` header prefers most, or `default`
    /// when the header is absent or names none of them.
    ///
    /// Entries are weighed by their `q` value (1 when absent); among equal weights the
    /// first listed wins, and `q=0` excludes a language.
    pub fn negotiate(accept_language: Option<&str>, default: Lang) -> Lang {
        let Some(header) = accept_language else {
            return default;
        };
        let mut best: Option<(Lang, f32)> = None;
        for entry in header.split(',') {
            let mut parts = entry.split(';');
            let Some(lang) = parts.next().and_then(Lang::from_tag) else {
                continue;
            };
            let weight = parts
                .find_map(|param| param.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
                .unwrap_or(0.0);
            if weight <= 0.0 {
                continue;
            }
            if best.is_none_or(|(_, best_weight)| weight > best_weight) {
                best = Some((lang, weight));
            }
        }
        best.map_or(default, |(lang, _)| lang)
    }

    /// Returns the BCP 47 tag of the language.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Zh => "zh",
            Self::En => "en",
            Self::Ja => "ja",
        }
    }
}

/// One text in the three languages.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub zh: &'static str,
    pub en: &'static str,
    pub ja: &'static str,
}

impl Text {
    pub fn get(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::Zh => self.zh,
            Lang::En => self.en,
            Lang::Ja => self.ja,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_picks_highest_weight() {
        let lang = Lang::negotiate(Some("fr-FR, en;q=0.5, ja;q=0.8"), Lang::Zh);
        assert_eq!(lang, Lang::Ja);
    }

    #[test]
    fn negotiate_reads_region_tags() {
        assert_eq!(Lang::negotiate(Some("en-US,en;q=0.9"), Lang::Zh), Lang::En);
        assert_eq!(Lang::negotiate(Some("zh-CN"), Lang::En), Lang::Zh);
    }

    #[test]
    fn negotiate_falls_back_to_default() {
        assert_eq!(Lang::negotiate(None, Lang::Zh), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("de, fr"), Lang::En), Lang::En);
        assert_eq!(Lang::negotiate(Some("en;q=0"), Lang::Ja), Lang::Ja);
        assert_eq!(Lang::negotiate(Some("en;q=abc"), Lang::Ja), Lang::Ja);
    }

    #[test]
    fn negotiate_keeps_first_of_equal_weights() {
        assert_eq!(Lang::negotiate(Some("ja, en"), Lang::Zh), Lang::Ja);
    }
}
