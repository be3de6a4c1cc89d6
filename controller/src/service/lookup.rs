//! `haven.admin.v1.LookupService`: the ids behind a name a person typed, so a program can
//! send ids in id fields instead of names that may become ambiguous.
//!
//! Only what the caller may see is searched (their homes; staff only for those who manage
//! staff), so a lookup never reveals a record a request about it would call "not found".

use std::sync::Arc;

use haven_proto::admin::v1 as api;
use haven_proto::admin::v1::lookup_service_server::LookupService;
use tonic::{Request, Response, Status};

use super::Context;
use super::convert;
use crate::domain::Action;
use crate::domain::lookup::{names, names_child};

pub struct LookupApi {
    pub ctx: Arc<Context>,
}

/// The longest name worth comparing; anything longer names nothing.
const MAX_NAME: usize = 200;

#[tonic::async_trait]
impl LookupService for LookupApi {
    async fn lookup(
        &self,
        request: Request<api::LookupRequest>,
    ) -> Result<Response<api::LookupResponse>, Status> {
        use api::LookupKind as K;
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let typed = req.name.trim();
        if typed.is_empty() || typed.chars().count() > MAX_NAME {
            return Err(super::errors::bad_field(
                "name",
                "say which name to look up (at most 200 characters)",
            ));
        }
        let mut kinds = Vec::new();
        for &k in &req.kinds {
            match K::try_from(k) {
                Ok(K::Unspecified) | Err(_) => {
                    return Err(super::errors::bad_field(
                        "kinds",
                        format!(
                            "{k} is not a kind of record this controller looks up: use \
                             LOOKUP_KIND_HOME, _CHILD, _STAFF or _DEVICE (or none for all)"
                        ),
                    ));
                }
                Ok(k) => kinds.push(k),
            }
        }
        let wanted = |k: K| kinds.is_empty() || kinds.contains(&k);
        let store = &self.ctx.store;
        let homes = store.list_homes().await?;
        let home_name = |id: &str| {
            homes
                .iter()
                .find(|h| h.id == id)
                .map(|h| h.name.clone())
                .unwrap_or_default()
        };
        let mut matches = Vec::new();
        if wanted(K::Home) {
            for h in homes.iter().filter(|h| who.homes.covers(&h.id)) {
                if names(&h.name, typed) || h.id == typed {
                    matches.push(api::LookupMatch {
                        kind: K::Home.into(),
                        id: h.id.clone(),
                        name: h.name.clone(),
                        ..Default::default()
                    });
                }
            }
        }
        if wanted(K::Child) {
            for c in store.list_children(None).await? {
                let inactive = c.archived_at.is_some();
                if who.homes.covers(&c.home_id)
                    && (req.include_inactive || !inactive)
                    && (names_child(&c.name, typed) || c.id == typed)
                {
                    matches.push(api::LookupMatch {
                        kind: K::Child.into(),
                        home_name: c.home_name,
                        id: c.id,
                        name: c.name,
                        home_id: c.home_id,
                        inactive,
                        ..Default::default()
                    });
                }
            }
        }
        if wanted(K::Device) {
            for d in store.list_devices(None, req.include_inactive).await? {
                if !who.homes.covers(&d.home_id) {
                    continue;
                }
                let view = convert::device(d.clone(), false);
                let hostname = view.inventory.map(|i| i.hostname).unwrap_or_default();
                if names_child(&d.child_name, typed) || names(&hostname, typed) || d.id == typed {
                    matches.push(api::LookupMatch {
                        kind: K::Device.into(),
                        name: if hostname.is_empty() {
                            d.child_name
                        } else {
                            format!("{} ({hostname})", d.child_name)
                        },
                        home_name: home_name(&d.home_id),
                        inactive: d.status != "active",
                        id: d.id,
                        home_id: d.home_id,
                        child_id: d.child_id,
                    });
                }
            }
        }
        // Staff are listed to those who manage them only; asked for by others, nothing more
        // is said than that no staff matched (the kinds asked for are the caller's choice).
        if wanted(K::Staff) && who.role.may(Action::ManageStaff) {
            for s in store.list_staff(req.include_inactive).await? {
                if names(&s.name, typed) || s.id == typed {
                    matches.push(api::LookupMatch {
                        kind: K::Staff.into(),
                        inactive: s.revoked_at.is_some(),
                        id: s.id,
                        name: s.name,
                        ..Default::default()
                    });
                }
            }
        }
        Ok(Response::new(api::LookupResponse { matches }))
    }
}
