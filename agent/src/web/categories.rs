//! Filter categories: the built-in ones (social networking per WB4, DNS-over-HTTPS services)
//! and any the home adds from list files.
//!
//! A category is a name and a [`DomainSet`]. The built-in lists are short and name the big
//! sites by their main domains (suffix matching covers their subdomains); a home extends them,
//! or adds categories of its own, with a lists folder in either layout:
//! - `<folder>/<category>/domains` (the UT1 layout used by school filters), or
//! - `<folder>/<category>.txt` (any of the formats in [`super::list`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::list::{DomainSet, ImportStats, ListError};

/// Sites where people make a profile, contact others, share photos, music and video or chat
/// in forums (WB4). Staff can allow one of them for a child through the plan (WB2).
pub const SOCIAL_NETWORKING: &str = "social-networking";

/// Services that resolve names over HTTPS or TLS. Always blocked: a browser using one would
/// get round the filter entirely.
pub const DOH: &str = "doh";

const SOCIAL_SITES: &[&str] = &[
    "facebook.com",
    "facebook.net",
    "fb.com",
    "fb.me",
    "fbcdn.net",
    "messenger.com",
    "instagram.com",
    "cdninstagram.com",
    "threads.net",
    "threads.com",
    "tiktok.com",
    "tiktokv.com",
    "tiktokcdn.com",
    "musical.ly",
    "snapchat.com",
    "snap.com",
    "sc-cdn.net",
    "x.com",
    "twitter.com",
    "twimg.com",
    "t.co",
    "web.whatsapp.com",
    "discord.com",
    "discord.gg",
    "discordapp.com",
    "discordapp.net",
    "reddit.com",
    "redd.it",
    "redditmedia.com",
    "tumblr.com",
    "pinterest.com",
    "pinterest.co.uk",
    "pinimg.com",
    "linkedin.com",
    "bere.al",
    "bereal.com",
    "yubo.live",
    "wizz.chat",
    "omegle.com",
    "ome.tv",
    "chatroulette.com",
    "kik.com",
    "telegram.org",
    "web.telegram.org",
    "t.me",
    "vk.com",
    "ok.ru",
    "weibo.com",
    "myspace.com",
    "bsky.app",
    "bsky.social",
    "mastodon.social",
    "tellonym.me",
    "ask.fm",
    "houseparty.com",
    "likee.video",
    "triller.co",
    "twitch.tv",
    "lemon8-app.com",
    "quora.com",
    "flickr.com",
    "vsco.co",
    "meetme.com",
    "tagged.com",
    "badoo.com",
    "tinder.com",
    "hinge.co",
    "bumble.com",
    "grindr.com",
];

const DOH_HOSTS: &[&str] = &[
    "dns.google",
    "dns.google.com",
    "8888.google",
    "cloudflare-dns.com",
    "mozilla.cloudflare-dns.com",
    "one.one.one.one",
    "1dot1dot1dot1.cloudflare-dns.com",
    "security.cloudflare-dns.com",
    "family.cloudflare-dns.com",
    "dns.quad9.net",
    "dns9.quad9.net",
    "dns10.quad9.net",
    "dns11.quad9.net",
    "doh.opendns.com",
    "doh.familyshield.opendns.com",
    "dns.adguard.com",
    "dns.adguard-dns.com",
    "dns-family.adguard.com",
    "doh.cleanbrowsing.org",
    "dns.nextdns.io",
    "doh.mullvad.net",
    "dns.mullvad.net",
    "doh.dns.sb",
    "dns.controld.com",
    "freedns.controld.com",
    "doh.libredns.gr",
    "dns.alidns.com",
    "doh.pub",
    "dns.twnic.tw",
    "ordns.he.net",
    "doh.xfinity.com",
    "chrome.cloudflare-dns.com",
    "doh.quickline.ch",
    "dns0.eu",
    "zero.dns0.eu",
    "kids.dns0.eu",
    "use-application-dns.net",
];

/// A category list file the import read, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub category: String,
    pub path: String,
    pub stats: ImportStats,
}

/// Every category this device knows, by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    categories: BTreeMap<String, Arc<DomainSet>>,
    /// Categories that came from the home's lists folder (not built in).
    imported: Vec<String>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::built_in()
    }
}

/// Category names are compared in one spelling: lower case, `-` between words, and the UT1
/// names of the built-in categories mapped onto them.
pub fn canonical_category(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    match n.as_str() {
        "social-networks" | "social-network" | "social" | "socialnetworking" => {
            SOCIAL_NETWORKING.into()
        }
        "dns-over-https" => DOH.into(),
        _ => n,
    }
}

impl Catalog {
    /// The built-in categories only.
    pub fn built_in() -> Catalog {
        let mut categories = BTreeMap::new();
        categories.insert(
            SOCIAL_NETWORKING.to_string(),
            Arc::new(DomainSet::from_names(SOCIAL_SITES.iter().copied())),
        );
        categories.insert(
            DOH.to_string(),
            Arc::new(DomainSet::from_names(DOH_HOSTS.iter().copied())),
        );
        Catalog {
            categories,
            imported: Vec::new(),
        }
    }

    /// The built-in categories extended by a lists folder. A file that cannot be read is an
    /// error (a home that installed a list expects it enforced); lines that are not names are
    /// skipped and counted.
    pub fn load(folder: &Path) -> Result<(Catalog, Vec<Imported>), ListError> {
        let mut catalog = Catalog::built_in();
        let read_err = |source| ListError::Read {
            path: folder.display().to_string(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(folder)
            .map_err(read_err)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        let mut imported = Vec::new();
        for path in entries {
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let (category, file) = if path.is_dir() {
                let file = path.join("domains");
                if !file.is_file() {
                    continue;
                }
                (canonical_category(stem), file)
            } else if path.extension().is_some_and(|e| e == "txt") {
                (canonical_category(stem), path.clone())
            } else {
                continue;
            };
            if category.is_empty() {
                continue;
            }
            let (set, stats) = DomainSet::load(&file)?;
            catalog.extend(&category, set);
            imported.push(Imported {
                category,
                path: file.display().to_string(),
                stats,
            });
        }
        Ok((catalog, imported))
    }

    /// Adds names to a category, creating it if new.
    pub fn extend(&mut self, category: &str, set: DomainSet) {
        let category = canonical_category(category);
        let merged = match self.categories.get(&category) {
            Some(existing) => DomainSet::union(&[existing, &set]),
            None => set,
        };
        if category != SOCIAL_NETWORKING && category != DOH && !self.imported.contains(&category) {
            self.imported.push(category.clone());
        }
        self.categories.insert(category, Arc::new(merged));
    }

    /// Adds a list the controller sent. It joins a built-in or local category of the same
    /// name; otherwise it is blocked only when the policy names it (the controller's policy
    /// says what the profile blocks, WB4).
    pub fn add_received(&mut self, category: &str, set: Arc<DomainSet>) {
        let category = canonical_category(category);
        let merged = match self.categories.get(&category) {
            Some(existing) => Arc::new(DomainSet::union(&[existing, &set])),
            None => set,
        };
        self.categories.insert(category, merged);
    }

    pub fn get(&self, category: &str) -> Option<&Arc<DomainSet>> {
        self.categories.get(&canonical_category(category))
    }

    /// Categories the home added (beyond the built-in ones), in name order.
    pub fn imported_categories(&self) -> &[String] {
        &self.imported
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.categories.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // clause WB4
    #[test]
    fn wb4_the_social_category_covers_the_big_sites_and_their_subdomains() {
        let c = Catalog::built_in();
        let social = c.get("social-networking").unwrap();
        for name in [
            "facebook.com",
            "m.facebook.com",
            "www.instagram.com",
            "x.com",
            "twitter.com",
            "www.snapchat.com",
            "tiktok.com",
            "discord.com",
            "old.reddit.com",
            "threads.net",
        ] {
            assert!(social.contains_suffix_of(name), "{name}");
        }
        for name in ["bbc.co.uk", "xfacebook.com", "wikipedia.org", "box.com"] {
            assert!(!social.contains_suffix_of(name), "{name}");
        }
        assert!(c.get("doh").unwrap().contains_suffix_of("dns.google"));
        assert!(c.get("DNS_over_HTTPS").is_some());
    }

    // clause WB4: the category is extendable.
    #[test]
    fn wb4_a_lists_folder_extends_and_adds_categories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("social_networks")).unwrap();
        std::fs::write(
            dir.path().join("social_networks/domains"),
            "newsocial.example\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("gambling.txt"),
            "0.0.0.0 bets.example\n||casino.example^\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
        let (c, imported) = Catalog::load(dir.path()).unwrap();
        let social = c.get(SOCIAL_NETWORKING).unwrap();
        assert!(social.contains_suffix_of("www.newsocial.example"));
        assert!(social.contains_suffix_of("facebook.com"), "built-ins kept");
        assert!(
            c.get("gambling")
                .unwrap()
                .contains_suffix_of("a.casino.example")
        );
        assert_eq!(c.imported_categories(), ["gambling"]);
        assert_eq!(imported.len(), 2);
        assert!(Catalog::load(&dir.path().join("missing")).is_err());
    }
}
