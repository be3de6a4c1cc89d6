//! Staff tokens: how a request proves which member of staff sent it.
//!
//! A token is 256 random bits shown once when it is made; only its SHA-256 is stored, so a
//! copy of the database does not give anyone a way in. High-entropy tokens need no slow hash.

use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::{Context, now_ms};
use crate::domain::{Action, HomeScope, StaffIdentity, role};
use crate::store::{ChildRecord, DeviceRecord, HomeRecord, StoreError};

pub const TOKEN_PREFIX: &str = "hvn_";

/// A new token and the short hint that is kept to tell tokens apart.
pub fn new_token() -> (String, String) {
    let bytes = crate::ids::random_bytes::<32>();
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hint = token.chars().take(10).collect();
    (token, hint)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Tells every long-lived staff stream (`haven violations --watch`, `haven lockdown`'s live
/// progress) that a member of staff's access was withdrawn, so a revoked token stops receiving
/// children's names and numbers at once, not when it next makes a request.
pub struct StaffSessions {
    withdrawn: tokio::sync::broadcast::Sender<String>,
}

impl Default for StaffSessions {
    fn default() -> Self {
        StaffSessions {
            withdrawn: tokio::sync::broadcast::channel(64).0,
        }
    }
}

/// What a revoked member of staff's open stream ends with.
pub const ACCESS_WITHDRAWN: &str =
    "your access was withdrawn by an administrator: this stream has ended";

/// The status a revoked member of staff's open stream ends with.
pub fn access_withdrawn() -> Status {
    super::errors::refused(
        tonic::Code::PermissionDenied,
        super::errors::ACCESS_WITHDRAWN,
        None,
        ACCESS_WITHDRAWN,
    )
}

impl StaffSessions {
    /// Ends every stream `staff_id` holds.
    pub fn withdraw(&self, staff_id: &str) {
        let _ = self.withdrawn.send(staff_id.to_string());
    }

    /// Resolves when `staff_id`'s access is withdrawn. Subscribed when called, so call it
    /// before the stream starts sending. A lagging receiver (many revocations at once) checks
    /// conservatively: it ends the stream, and the client's next request is refused or not.
    pub fn until_withdrawn(&self, staff_id: &str) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.withdrawn.subscribe();
        let me = staff_id.to_string();
        async move {
            loop {
                match rx.recv().await {
                    Ok(id) if id == me => return,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        }
    }
}

impl Context {
    /// Who is asking, from the `authorization: Bearer …` metadata.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<StaffIdentity, Status> {
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                super::errors::refused(
                    tonic::Code::Unauthenticated,
                    super::errors::TOKEN_INVALID,
                    None,
                    "no staff token was sent: log in first",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header);
        let member = self
            .store
            .staff_by_token(&token_hash(token), now_ms())
            .await?
            .ok_or_else(|| {
                super::errors::refused(
                    tonic::Code::Unauthenticated,
                    super::errors::TOKEN_INVALID,
                    None,
                    "this staff token is not valid (mistyped or revoked): ask an administrator for a new one",
                )
            })?;
        crate::domain::tokens::check_not_expired(member.token_expires_at, now_ms()).map_err(
            |e| {
                super::errors::refused(
                    tonic::Code::Unauthenticated,
                    super::errors::TOKEN_EXPIRED,
                    None,
                    e,
                )
            },
        )?;
        self.first_login_done();
        Ok(StaffIdentity {
            homes: HomeScope::for_member(member.role, member.homes),
            id: member.id,
            name: member.name,
            role: member.role,
        })
    }

    /// The first successful login makes the first administrator's login file useless and a
    /// risk (it holds a working token): remove it.
    fn first_login_done(&self) {
        let mut file = self
            .first_login_file
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(path) = file.take() {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "first login done: removed the first login line")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "could not remove the first login line; delete it by hand")
                }
            }
        }
    }

    /// Who is asking, if their role may take `action`.
    pub async fn authorize(
        &self,
        metadata: &MetadataMap,
        action: Action,
    ) -> Result<StaffIdentity, Status> {
        let who = self.authenticate(metadata).await?;
        if who.role.may(action) {
            Ok(who)
        } else {
            tracing::info!(staff = %who.id, ?action, "refused: role may not");
            Err(super::errors::refused(
                tonic::Code::PermissionDenied,
                super::errors::ROLE_NOT_ALLOWED,
                None,
                role::refusal(who.role, action),
            ))
        }
    }
}

/// Lookups on behalf of a member of staff. Anything outside the homes they work in is refused
/// with the very same "not found" a missing record gets, so a request can never tell a child
/// in another home from no child at all.
impl Context {
    /// Every staff lookup of a child comes here, so this is where a read of the child's
    /// records is noted (when the request is a read: `domain::reads::what_was_read`).
    pub async fn child_for(&self, who: &StaffIdentity, key: &str) -> Result<ChildRecord, Status> {
        let child = self.store.find_child_within(key, &who.homes).await?;
        self.note_read(who, &child.id);
        Ok(child)
    }

    pub async fn home_for(&self, who: &StaffIdentity, key: &str) -> Result<HomeRecord, Status> {
        let home = self.store.find_home(key).await?;
        let home_id = home.id.clone();
        in_scope(who, &home_id, "home", key, home)
    }

    pub async fn device_for(&self, who: &StaffIdentity, key: &str) -> Result<DeviceRecord, Status> {
        let device = self.store.find_device(key).await?;
        let home_id = device.home_id.clone();
        let device = in_scope(who, &home_id, "device", key, device)?;
        self.note_read(who, &device.child_id);
        Ok(device)
    }

    /// The id of the home a list is narrowed to, or `None` when no home was named.
    pub async fn home_filter(
        &self,
        who: &StaffIdentity,
        key: &str,
    ) -> Result<Option<String>, Status> {
        match key.trim() {
            "" => Ok(None),
            key => Ok(Some(self.home_for(who, key).await?.id)),
        }
    }

    /// The id of the child a list is narrowed to, or `None` when no child was named.
    pub async fn child_filter(
        &self,
        who: &StaffIdentity,
        key: &str,
    ) -> Result<Option<String>, Status> {
        match key.trim() {
            "" => Ok(None),
            key => Ok(Some(self.child_for(who, key).await?.id)),
        }
    }
}

/// `record` (the `what` asked for as `key`, kept in home `home_id`) if `who` works in that
/// home; otherwise the very "not found" a missing record gets.
pub fn in_scope<T>(
    who: &StaffIdentity,
    home_id: &str,
    what: &'static str,
    key: &str,
    record: T,
) -> Result<T, Status> {
    if who.homes.covers(home_id) {
        Ok(record)
    } else {
        Err(not_found(what, key))
    }
}

/// The "not found" a missing record gets; also what a record in another home gets.
fn not_found(what: &'static str, key: &str) -> Status {
    StoreError::NotFound {
        what,
        key: key.to_string(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, hint) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 4 + 64);
        assert!(a.starts_with(&hint));
        assert_eq!(token_hash(&a), token_hash(&format!(" {a}\n")));
        assert_ne!(token_hash(&a), a);
    }
}
