//! `haven.admin.v1`: the staff API behind the `haven` command line.
//!
//! Each handler follows the same three steps: check the caller's role, validate the request
//! into domain values (refusing with a one-line reason before anything is written), then call
//! the store and push any policy change to the devices it affects.

// The deprecated words fields beside each enum are still filled and read, for older clients
// (proto/README.md).
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::Arc;

use haven_proto::admin::v1::{self as api, *};
use tonic::{Request, Response, Status};

use super::convert::WithTimes as _;
use super::wire_enums::{pick, wire};
use super::{Context, auth, convert, now_ms, pages};
use crate::domain::audit::ChainVerifier;
use crate::domain::enrollment::{code_from_random, normalise_code, validity_minutes};
use crate::domain::phone::normalise_protected;
use crate::domain::policy::{RemovalTarget, protected_for_child, removal_target, with_builtin};
use crate::domain::records::{clean_name, parse_date_of_birth};
use crate::domain::{Action, HomeScope, Role};
use crate::ids::random_bytes;
use crate::store::{Actor, NewStaff};

pub struct AdminApi {
    pub ctx: Arc<Context>,
}

fn invalid(e: impl std::fmt::Display) -> Status {
    super::errors::invalid(e.to_string())
}

fn required<'a>(what: &str, value: &'a str) -> Result<&'a str, Status> {
    let v = value.trim();
    if v.is_empty() {
        let field = match what {
            "code id" => "id",
            "staff member" => "staff",
            other => other,
        };
        Err(super::errors::bad_field(field, format!("say which {what}")))
    } else {
        Ok(v)
    }
}

#[tonic::async_trait]
impl home_service_server::HomeService for AdminApi {
    async fn add_home(&self, request: Request<AddHomeRequest>) -> Result<Response<Home>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageHomes)
            .await?;
        let req = request.into_inner();
        let name = clean_name("home name", &req.name).map_err(invalid)?;
        let tz = if req.time_zone.trim().is_empty() {
            "Europe/London".to_string()
        } else {
            req.time_zone.trim().to_string()
        };
        jiff::tz::TimeZone::get(&tz).map_err(|_| {
            super::errors::invalid(format!(
                "{tz:?} is not a time zone Haven knows: use a name like Europe/London"
            ))
        })?;
        let home = self
            .ctx
            .store
            .add_home(&Actor::staff(&who), &name, &tz, now_ms())
            .await?;
        Ok(Response::new(convert::home(home)))
    }

    async fn list_homes(
        &self,
        request: Request<ListHomesRequest>,
    ) -> Result<Response<ListHomesResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let homes = self.ctx.store.list_homes().await?;
        Ok(Response::new(ListHomesResponse {
            homes: homes
                .into_iter()
                .filter(|h| who.homes.covers(&h.id))
                .map(convert::home)
                .collect(),
        }))
    }

    async fn add_protected_contact(
        &self,
        request: Request<AddProtectedContactRequest>,
    ) -> Result<Response<api::ProtectedContact>, Status> {
        let started = std::time::Instant::now();
        let who = self
            .ctx
            .authorize(request.metadata(), Action::EditProtectedContacts)
            .await?;
        let req = request.into_inner();
        // A contact for one child (their social worker, IRO, advocate) belongs to the
        // child's home; otherwise the home is named.
        let (home, child) = match req.child.trim() {
            "" => (
                self.ctx
                    .home_for(&who, required("home", &req.home)?)
                    .await?,
                None,
            ),
            key => {
                let child = self.ctx.child_for(&who, key).await?;
                let home = self.ctx.home_for(&who, &child.home_id).await?;
                (home, Some(child))
            }
        };
        let name = clean_name("contact's name", &req.name).map_err(invalid)?;
        // Stored in E.164 (or as a short code such as 999), so the same number typed two
        // ways is one contact and the device compares like with like.
        let address = normalise_protected(&req.address).map_err(invalid)?;
        let (contact, version) = self
            .ctx
            .store
            .add_protected_contact(
                &Actor::staff(&who),
                &home.id,
                child.as_ref().map(|c| c.id.as_str()),
                &name,
                &address,
                now_ms(),
            )
            .await?;
        tracing::info!(home = %home.id, version, written_us = started.elapsed().as_micros() as u64, "protected contact added");
        // Stored first, pushed second: a device that misses the push catches up on reconnect,
        // so a failed push is logged, never reported as a failed change.
        if let Err(e) = self
            .ctx
            .push_home(&home.id, version, contact.added_at)
            .await
        {
            tracing::warn!(home = %home.id, error = %e, "push failed; devices catch up on reconnect");
        }
        let child_name = child.map(|c| c.name).unwrap_or_default();
        Ok(Response::new(protected_contact(contact, child_name)))
    }

    async fn remove_protected_contact(
        &self,
        request: Request<RemoveProtectedContactRequest>,
    ) -> Result<Response<api::ProtectedContact>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::EditProtectedContacts)
            .await?;
        let req = request.into_inner();
        let home = self
            .ctx
            .home_for(&who, required("home", &req.home)?)
            .await?;
        let contact = required("contact", &req.contact)?;
        let reason = clean_name("reason", &req.reason).map_err(invalid)?;
        let own = self.ctx.store.list_protected_contacts(&home.id).await?;
        let RemovalTarget::Entry(entry) = removal_target(contact, &own).map_err(|r| {
            let code = if r.reason == super::errors::NOT_FOUND {
                tonic::Code::NotFound
            } else {
                tonic::Code::FailedPrecondition
            };
            super::errors::refusal(code, r)
        })?;
        let (removed, version) = self
            .ctx
            .store
            .remove_protected_contact(&Actor::staff(&who), &home.id, &entry.id, &reason, now_ms())
            .await?;
        if let Err(e) = self.ctx.push_home(&home.id, version, now_ms()).await {
            tracing::warn!(home = %home.id, error = %e, "push failed; devices catch up on reconnect");
        }
        Ok(Response::new(protected_contact(removed, String::new())))
    }

    async fn list_protected_contacts(
        &self,
        request: Request<ListProtectedContactsRequest>,
    ) -> Result<Response<ListProtectedContactsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let (home, child) = match req.child.trim() {
            "" => (
                self.ctx
                    .home_for(&who, required("home", &req.home)?)
                    .await?,
                None,
            ),
            key => {
                let child = self.ctx.child_for(&who, key).await?;
                (self.ctx.home_for(&who, &child.home_id).await?, Some(child))
            }
        };
        let mut contacts = self.ctx.store.list_protected_contacts(&home.id).await?;
        if let Some(child) = &child {
            contacts = protected_for_child(&contacts, &child.id);
        }
        // What the devices enforce: the built-in list first, then the home's own.
        let contacts = with_builtin(&contacts);
        let names: HashMap<String, String> = self
            .ctx
            .store
            .list_children(Some(&home.id))
            .await?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        Ok(Response::new(ListProtectedContactsResponse {
            contacts: contacts
                .into_iter()
                .map(|c| {
                    let child_name = c
                        .child_id
                        .as_ref()
                        .and_then(|id| names.get(id).cloned())
                        .unwrap_or_default();
                    protected_contact(c, child_name)
                })
                .collect(),
        }))
    }
}

fn enrollment_code(c: crate::store::EnrollmentRecord) -> EnrollmentCode {
    EnrollmentCode {
        id: c.id,
        child_id: c.child_id,
        child_name: c.child_name,
        hint: c.hint,
        created_at_unix_ms: c.created_at,
        created_by: c.created_by,
        expires_at_unix_ms: c.expires_at,
        state: c.state.word().to_string(),
        code_state: wire::<EnrollmentCodeState>(c.state.word()),
        device_id: c.device_id.unwrap_or_default(),
        ..Default::default()
    }
    .with_times()
}

fn protected_contact(
    c: crate::domain::policy::ProtectedContact,
    child_name: String,
) -> api::ProtectedContact {
    api::ProtectedContact {
        built_in: c.id.starts_with("built-in:"),
        child_id: c.child_id.unwrap_or_default(),
        child_name,
        id: c.id,
        home_id: c.home_id,
        name: c.name,
        address: c.address,
        added_by: c.added_by,
        added_at_unix_ms: c.added_at,
        ..Default::default()
    }
    .with_times()
}

#[tonic::async_trait]
impl child_service_server::ChildService for AdminApi {
    async fn add_child(
        &self,
        request: Request<AddChildRequest>,
    ) -> Result<Response<Child>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageChildren)
            .await?;
        let req = request.into_inner();
        let home = self
            .ctx
            .home_for(&who, required("home", &req.home)?)
            .await?;
        let name = clean_name("child's name", &req.name).map_err(invalid)?;
        let today = jiff::Zoned::now().date();
        let dob = parse_date_of_birth(&req.date_of_birth, today).map_err(invalid)?;
        let child = self
            .ctx
            .store
            .add_child(
                &Actor::staff(&who),
                &home.id,
                &name,
                &dob.to_string(),
                now_ms(),
            )
            .await?;
        Ok(Response::new(convert::child(child)))
    }

    async fn list_children(
        &self,
        request: Request<ListChildrenRequest>,
    ) -> Result<Response<ListChildrenResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let home_id = self.ctx.home_filter(&who, &req.home).await?;
        let filters = pages::Filters::new("children")
            .with("home", home_id.as_deref())
            .with_bool("include_archived", req.include_archived);
        let page = pages::page(
            &req.page_token,
            &filters,
            pages::WHOLE_LIST.size(req.page_size, 0),
        )?;
        let homes = pages::homes_of(&who.homes);
        let children = self
            .ctx
            .store
            .list_children_page(
                home_id.as_deref(),
                req.include_archived,
                homes.as_deref(),
                &page,
            )
            .await?;
        Ok(Response::new(ListChildrenResponse {
            next_page_token: pages::next_token(children.next.as_ref(), &filters),
            children: children
                .items
                .into_iter()
                .filter(|c| who.homes.covers(&c.home_id))
                .map(convert::child)
                .collect(),
        }))
    }

    async fn archive_child(
        &self,
        request: Request<ArchiveChildRequest>,
    ) -> Result<Response<Child>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageChildren)
            .await?;
        let req = request.into_inner();
        let child = self
            .ctx
            .child_for(&who, required("child", &req.child)?)
            .await?;
        let reason = clean_name("reason", &req.reason).map_err(invalid)?;
        let archived = self
            .ctx
            .store
            .archive_child(&Actor::staff(&who), &child.id, &reason, now_ms())
            .await?;
        Ok(Response::new(convert::child(archived)))
    }

    async fn show_child(
        &self,
        request: Request<ShowChildRequest>,
    ) -> Result<Response<Child>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child = self
            .ctx
            .child_for(&who, required("child", &req.child)?)
            .await?;
        Ok(Response::new(convert::child(child)))
    }
}

#[tonic::async_trait]
impl device_service_server::DeviceService for AdminApi {
    async fn create_enrollment(
        &self,
        request: Request<CreateEnrollmentRequest>,
    ) -> Result<Response<Enrollment>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageDevices)
            .await?;
        let req = request.into_inner();
        let child = self
            .ctx
            .child_for(&who, required("child", &req.child)?)
            .await?;
        let minutes = validity_minutes(req.valid_for_minutes).map_err(super::errors::invalid)?;
        let code = code_from_random(random_bytes::<12>());
        let normalised = normalise_code(&code).unwrap_or_default();
        let now = now_ms();
        let expires_at = now + i64::from(minutes) * 60_000;
        self.ctx
            .store
            .create_enrollment_with(
                &Actor::staff(&who),
                &child.id,
                &auth::token_hash(&normalised),
                &crate::ids::new_id("enr"),
                &crate::domain::enrollment::code_hint(&code),
                expires_at,
                now,
            )
            .await?;
        Ok(Response::new(
            Enrollment {
                code,
                child_id: child.id,
                child_name: child.name,
                expires_at_unix_ms: expires_at,
                controller_url: self.ctx.public_url.clone(),
                ca_pin: self.ctx.pki.ca_pin.clone(),
                ..Default::default()
            }
            .with_times(),
        ))
    }

    async fn list_enrollment_codes(
        &self,
        request: Request<ListEnrollmentCodesRequest>,
    ) -> Result<Response<ListEnrollmentCodesResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageDevices)
            .await?;
        let req = request.into_inner();
        let child_id = self.ctx.child_filter(&who, &req.child).await?;
        let codes = self
            .ctx
            .store
            .list_enrollments(child_id.as_deref(), now_ms())
            .await?;
        Ok(Response::new(ListEnrollmentCodesResponse {
            codes: codes
                .into_iter()
                .filter(|c| who.homes.covers(&c.home_id))
                .filter(|c| req.all || c.state == crate::domain::enrollment::CodeState::Usable)
                .map(enrollment_code)
                .collect(),
        }))
    }

    async fn cancel_enrollment_code(
        &self,
        request: Request<CancelEnrollmentCodeRequest>,
    ) -> Result<Response<EnrollmentCode>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageDevices)
            .await?;
        let req = request.into_inner();
        let id = required("code id", &req.id)?;
        // Scoped like every other record: a code for a child in another home is "not found".
        let known = self.ctx.store.list_enrollments(None, now_ms()).await?;
        let Some(code) = known
            .iter()
            .find(|c| c.id == id && who.homes.covers(&c.home_id))
        else {
            return Err(super::errors::not_found(format!(
                "no enrollment code {id:?}: see `haven device codes`"
            )));
        };
        let cancelled = self
            .ctx
            .store
            .cancel_enrollment(&Actor::staff(&who), &code.id, now_ms())
            .await?;
        Ok(Response::new(enrollment_code(cancelled)))
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child_id = self.ctx.child_filter(&who, &req.child).await?;
        let filters = pages::Filters::new("devices")
            .with("child", child_id.as_deref())
            .with_bool("include_revoked", req.include_revoked);
        let page = pages::page(
            &req.page_token,
            &filters,
            pages::WHOLE_LIST.size(req.page_size, 0),
        )?;
        let homes = pages::homes_of(&who.homes);
        let devices = self
            .ctx
            .store
            .list_devices_page(
                child_id.as_deref(),
                req.include_revoked,
                homes.as_deref(),
                &page,
            )
            .await?;
        Ok(Response::new(
            ListDevicesResponse {
                next_page_token: pages::next_token(devices.next.as_ref(), &filters),
                devices: devices
                    .items
                    .into_iter()
                    .filter(|d| who.homes.covers(&d.home_id))
                    .map(|d| self.ctx.device_view(d))
                    .collect(),
            }
            .with_certificates(&self.ctx)
            .await?,
        ))
    }

    async fn list_expiring_devices(
        &self,
        request: Request<ListExpiringDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child_id = self.ctx.child_filter(&who, &req.child).await?;
        let now = now_ms();
        // Due and not renewed: less than a third of the lifetime left (a device online then
        // would have renewed), or already expired.
        let before = now.saturating_add(self.ctx.pki.device_lifetime.millis() / 3);
        let mut devices = Vec::new();
        for cert in self.ctx.store.certificates_expiring(before).await? {
            let d = self.ctx.store.find_device(&cert.device_id).await?;
            if who.homes.covers(&d.home_id) && child_id.as_deref().is_none_or(|c| c == d.child_id) {
                devices.push(self.ctx.device_view(d));
            }
        }
        Ok(Response::new(
            // Only devices due for renewal: a short list, sent whole (no next page).
            ListDevicesResponse {
                devices,
                next_page_token: String::new(),
            }
            .with_certificates(&self.ctx)
            .await?,
        ))
    }

    async fn show_device(
        &self,
        request: Request<ShowDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let d = self
            .ctx
            .device_for(&who, required("device", &req.device)?)
            .await?;
        let mut view = self.ctx.device_view(d);
        self.ctx.add_certificate(&mut view).await?;
        Ok(Response::new(view))
    }

    async fn revoke_device(
        &self,
        request: Request<RevokeDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageDevices)
            .await?;
        let req = request.into_inner();
        let device = self
            .ctx
            .device_for(&who, required("device", &req.device)?)
            .await?;
        let reason = match req.reason.trim() {
            "" => "removed by staff".to_string(),
            r => clean_name("reason", r).map_err(invalid)?,
        };
        let revoked = self
            .ctx
            .store
            .revoke_device(&Actor::staff(&who), &device.id, &reason, now_ms())
            .await?;
        // Tell the device why, then end its stream; it is refused from now on.
        self.ctx.registry.retire(&device.id, &reason);
        self.ctx
            .cluster
            .announce(crate::cluster::Event::DeviceRevoked {
                device: device.id.clone(),
                reason: reason.clone(),
            });
        tracing::info!(device = %device.id, staff = %who.id, "device revoked");
        Ok(Response::new(convert::device(revoked, false)))
    }
}

#[tonic::async_trait]
impl staff_service_server::StaffService for AdminApi {
    async fn add_staff(
        &self,
        request: Request<AddStaffRequest>,
    ) -> Result<Response<AddStaffResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageStaff)
            .await?;
        let req = request.into_inner();
        let name = clean_name("staff member's name", &req.name).map_err(invalid)?;
        let role = pick::<StaffRole>(req.staff_role, "staff_role", &req.role, "role")?;
        let field = if req.staff_role != 0 {
            "staff_role"
        } else {
            "role"
        };
        let role: Role = role
            .parse()
            .map_err(|e| super::errors::bad_field(field, e))?;
        let mut homes = Vec::new();
        for key in req.homes.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
            homes.push(self.ctx.home_for(&who, key).await?.id);
        }
        if homes.is_empty() && role != Role::Admin {
            return Err(super::errors::invalid(format!(
                "say which home {} works in with --home (repeat it for several homes): \
                 staff and managers see only the children of their own homes",
                name
            )));
        }
        let (token, hint) = auth::new_token();
        let member = self
            .ctx
            .store
            .add_staff(
                &Actor::staff(&who),
                NewStaff {
                    name: &name,
                    role,
                    homes: &homes,
                    token_hash: &auth::token_hash(&token),
                    token_hint: &hint,
                    token_expires_at: crate::domain::tokens::expires_at(
                        now_ms(),
                        self.ctx.staff_token_days,
                    ),
                },
                now_ms(),
            )
            .await?;
        Ok(Response::new(AddStaffResponse {
            member: Some(self.staff_member(member).await?),
            token,
        }))
    }

    async fn list_staff(
        &self,
        request: Request<ListStaffRequest>,
    ) -> Result<Response<ListStaffResponse>, Status> {
        self.ctx
            .authorize(request.metadata(), Action::ManageStaff)
            .await?;
        let req = request.into_inner();
        let filters =
            pages::Filters::new("staff").with_bool("include_revoked", req.include_revoked);
        let page = pages::page(
            &req.page_token,
            &filters,
            pages::WHOLE_LIST.size(req.page_size, 0),
        )?;
        let members = self
            .ctx
            .store
            .list_staff_page(req.include_revoked, &page)
            .await?;
        Ok(Response::new(ListStaffResponse {
            next_page_token: pages::next_token(members.next.as_ref(), &filters),
            staff: self.staff_members(members.items).await?,
        }))
    }

    async fn revoke_staff(
        &self,
        request: Request<RevokeStaffRequest>,
    ) -> Result<Response<StaffMember>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageStaff)
            .await?;
        let req = request.into_inner();
        let member = self
            .ctx
            .store
            .revoke_staff(
                &Actor::staff(&who),
                required("staff member", &req.staff)?,
                now_ms(),
            )
            .await?;
        self.ctx.withdraw_staff(&member.id);
        Ok(Response::new(self.staff_member(member).await?))
    }

    async fn rotate_token(
        &self,
        request: Request<RotateTokenRequest>,
    ) -> Result<Response<AddStaffResponse>, Status> {
        let who = self.ctx.authenticate(request.metadata()).await?;
        let req = request.into_inner();
        // Your own token, or (administrators) anyone's: a lost laptop is dealt with at once.
        let staff_id = match req.staff.trim() {
            "" => who.id.clone(),
            key => {
                if !who.role.may(Action::ManageStaff) {
                    return Err(super::errors::refused(
                        tonic::Code::PermissionDenied,
                        super::errors::ROLE_NOT_ALLOWED,
                        None,
                        crate::domain::role::refusal(who.role, Action::ManageStaff),
                    ));
                }
                let all = self.ctx.store.list_staff(false).await?;
                let found: Vec<_> = all
                    .iter()
                    .filter(|m| m.id == key || m.name.eq_ignore_ascii_case(key))
                    .collect();
                match found.as_slice() {
                    [one] => one.id.clone(),
                    [] => {
                        return Err(super::errors::not_found(format!(
                            "no member of staff is called {key:?}: see `haven staff list`"
                        )));
                    }
                    many => {
                        return Err(super::errors::refused(
                            tonic::Code::InvalidArgument,
                            super::errors::AMBIGUOUS_NAME,
                            None,
                            format!(
                                "more than one member of staff is called {key:?}: use the id instead ({})",
                                many.iter()
                                    .map(|m| m.id.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
            }
        };
        let (token, hint) = auth::new_token();
        let now = now_ms();
        let member = self
            .ctx
            .store
            .rotate_staff_token(
                &Actor::staff(&who),
                &staff_id,
                &auth::token_hash(&token),
                &hint,
                crate::domain::tokens::expires_at(now, self.ctx.staff_token_days),
                now,
            )
            .await?;
        // The old token's open streams end too: whoever holds it is no longer who it says.
        self.ctx.withdraw_staff(&member.id);
        Ok(Response::new(AddStaffResponse {
            member: Some(self.staff_member(member).await?),
            token,
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<StaffMember>, Status> {
        let who = self.ctx.authenticate(request.metadata()).await?;
        let (homes, home_ids) = match &who.homes {
            HomeScope::Everywhere => (Vec::new(), Vec::new()),
            HomeScope::Only(ids) => {
                let names = self.home_names().await?;
                let ids: Vec<String> = ids.iter().cloned().collect();
                (ids.iter().map(|id| name_of(&names, id)).collect(), ids)
            }
        };
        Ok(Response::new(StaffMember {
            id: who.id,
            name: who.name,
            role: who.role.as_str().to_string(),
            staff_role: wire::<StaffRole>(who.role.as_str()),
            homes,
            home_ids,
            ..Default::default()
        }))
    }

    async fn add_staff_to_home(
        &self,
        request: Request<AddStaffToHomeRequest>,
    ) -> Result<Response<StaffMember>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ManageStaff)
            .await?;
        let req = request.into_inner();
        let home = self
            .ctx
            .home_for(&who, required("home", &req.home)?)
            .await?;
        let key = required("staff member", &req.staff)?;
        let member = self
            .ctx
            .store
            .list_staff(false)
            .await?
            .into_iter()
            .find(|m| m.id == key || m.name.eq_ignore_ascii_case(key))
            .ok_or_else(|| {
                super::errors::not_found(format!(
                    "no staff member called {key:?} was found: `haven staff list` shows them"
                ))
            })?;
        self.ctx
            .store
            .add_staff_to_home(&Actor::staff(&who), &member.id, &home.id, now_ms())
            .await?;
        let mut updated = member;
        updated.homes.push(home.id);
        updated.homes.sort();
        Ok(Response::new(self.staff_member(updated).await?))
    }
}

impl AdminApi {
    /// A staff record for the wire, with the names of the homes the person works in.
    async fn staff_member(&self, member: crate::store::StaffRecord) -> Result<StaffMember, Status> {
        let mut one = self.staff_members(vec![member]).await?;
        Ok(one.pop().unwrap_or_default())
    }

    /// Staff records for the wire; the homes are read once for all of them.
    async fn staff_members(
        &self,
        members: Vec<crate::store::StaffRecord>,
    ) -> Result<Vec<StaffMember>, Status> {
        let names = self.home_names().await?;
        Ok(members
            .into_iter()
            .map(|m| StaffMember {
                homes: m.homes.iter().map(|id| name_of(&names, id)).collect(),
                ..convert::staff(m)
            })
            .collect())
    }

    async fn home_names(&self) -> Result<HashMap<String, String>, Status> {
        Ok(self
            .ctx
            .store
            .list_homes()
            .await?
            .into_iter()
            .map(|h| (h.id, h.name))
            .collect())
    }
}

/// A home's name, or its id if it has none on record.
fn name_of(names: &HashMap<String, String>, id: &str) -> String {
    names.get(id).cloned().unwrap_or_else(|| id.to_string())
}

#[tonic::async_trait]
impl audit_service_server::AuditService for AdminApi {
    async fn verify_audit(
        &self,
        request: Request<VerifyAuditRequest>,
    ) -> Result<Response<VerifyAuditResponse>, Status> {
        self.ctx
            .authorize(request.metadata(), Action::VerifyAudit)
            .await?;
        let mut verifier = ChainVerifier::default();
        let mut after = 0;
        loop {
            let page = self.ctx.store.audit_entries(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                if let Err(broken) = verifier.push(entry) {
                    tracing::warn!(
                        entry = broken.seq,
                        reason = broken.reason,
                        "audit trail broken"
                    );
                    return Ok(Response::new(VerifyAuditResponse {
                        intact: false,
                        entries_checked: verifier.count(),
                        first_broken_entry: broken.seq,
                        reason: broken.reason.to_string(),
                    }));
                }
            }
        }
        Ok(Response::new(VerifyAuditResponse {
            intact: true,
            entries_checked: verifier.count(),
            first_broken_entry: 0,
            reason: String::new(),
        }))
    }
    async fn make_checkpoint(
        &self,
        request: Request<MakeCheckpointRequest>,
    ) -> Result<Response<AuditCheckpoint>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::VerifyAudit)
            .await?;
        let c = self.ctx.make_checkpoint().await?;
        tracing::info!(staff = %who.id, entry = c.entry_seq, "checkpoint asked for");
        Ok(Response::new(
            AuditCheckpoint {
                text: self.ctx.checkpoint_text(&c),
                entry: c.entry_seq,
                entry_hash: c.entry_hash,
                entries: c.entries,
                at_unix_ms: c.at,
                key_id: c.key_id,
                signature: c.signature,
                public_key: hex::encode(self.ctx.audit_key.public().as_bytes()),
                at: None,
            }
            .with_times(),
        ))
    }

    async fn check_audit(
        &self,
        request: Request<CheckAuditRequest>,
    ) -> Result<Response<CheckAuditResponse>, Status> {
        self.ctx
            .authorize(request.metadata(), Action::VerifyAudit)
            .await?;
        let req = request.into_inner();
        Ok(Response::new(self.ctx.check_audit(&req.checkpoint).await?))
    }

    async fn list_reads(
        &self,
        request: Request<ListReadsRequest>,
    ) -> Result<Response<ListReadsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ListReads)
            .await?;
        let req = request.into_inner();
        let child = self.ctx.child_for(&who, &req.child).await?;
        // What was read a moment ago is listed too: write the batch first.
        if let Err(e) = self.ctx.reads.flush(self.ctx.store.as_ref()).await {
            tracing::warn!(error = %e, "could not write the latest reads; listing what is stored");
        }
        let since = convert::ms_of(req.since.as_ref(), req.since_unix_ms);
        let filters = pages::Filters::new("reads")
            .with("child", Some(&child.id))
            .with_int("since", since);
        #[allow(deprecated)] // `limit` still read for clients written before page_size
        let size = READS.size(req.page_size, req.limit);
        let page = pages::page(&req.page_token, &filters, size)?;
        let reads = self
            .ctx
            .store
            .reads_of_child(&child.id, since, &page)
            .await?;
        Ok(Response::new(ListReadsResponse {
            child_id: child.id,
            child_name: child.name,
            next_page_token: pages::next_token(reads.next.as_ref(), &filters),
            reads: reads
                .items
                .into_iter()
                .map(|r| {
                    RecordRead {
                        at_unix_ms: r.read.at,
                        staff_id: r.read.staff_id,
                        staff_name: r.staff_name,
                        child_id: r.read.child_id,
                        what: r.read.what,
                        at: None,
                    }
                    .with_times()
                })
                .collect(),
        }))
    }
}

/// Reads of a child's records: 1,000 a page unless asked, at most 10,000.
const READS: pages::PageLimits = pages::PageLimits {
    default: 1_000,
    max: 10_000,
};

/// Fills in when each device's certificate expires and how it stands (D7).
trait WithCertificates: Sized {
    async fn with_certificates(self, ctx: &Context) -> Result<Self, Status>;
}

impl WithCertificates for ListDevicesResponse {
    async fn with_certificates(mut self, ctx: &Context) -> Result<Self, Status> {
        for d in &mut self.devices {
            ctx.add_certificate(d).await?;
        }
        Ok(self)
    }
}

impl Context {
    /// Adds the device's certificate expiry and standing to its staff view (D7).
    pub async fn add_certificate(&self, view: &mut Device) -> Result<(), Status> {
        use crate::domain::device_cert::{Standing, standing};
        let Some(cert) = self.store.current_certificate(&view.id).await? else {
            return Ok(());
        };
        let s = standing(cert.not_after, now_ms(), self.pki.device_lifetime);
        view.certificate_not_after_unix_ms = cert.not_after;
        view.certificate_standing = match s {
            Standing::Current => "current",
            Standing::RenewalOverdue => "renewal overdue",
            Standing::Expired => "expired",
            Standing::LongLived => "long-lived",
        }
        .into();
        view.certificate_state = wire::<CertificateStanding>(&view.certificate_standing);
        view.certificate_standing_words = s.words().into();
        Ok(())
    }
}
