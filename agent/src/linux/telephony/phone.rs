//! Calls and texts the agent makes for the child through ModemManager: the child's account
//! may not use ModemManager itself (the shipped D-Bus policy), so the screening socket asks
//! [`Phone`] to place, answer and relay what the plan allows.
//!
//! A text's words pass straight from the socket to ModemManager (`Messaging.Create`, then
//! `Sms.Send`) and from ModemManager to the child's inbox; they are never stored or logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};

use super::{Shared, modem};
use crate::screening::{InboxText, Telephone, TelephoneError};

/// How long one modem operation may take before the child is told it failed.
const MODEM_TIMEOUT: Duration = Duration::from_secs(5);

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Phone {
    shared: Arc<Shared>,
}

impl Phone {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Runs `op` on the guard's runtime with the guard's bus connection. Called from the
    /// screening socket's own threads, never from inside the runtime.
    fn with_modem<T, F, Fut>(&self, op: F) -> Result<T, TelephoneError>
    where
        F: FnOnce(zbus::Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T, TelephoneError>>,
    {
        let conn = self
            .shared
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(TelephoneError::NoModem)?;
        self.shared.runtime.block_on(async move {
            tokio::time::timeout(MODEM_TIMEOUT, op(conn))
                .await
                .unwrap_or_else(|_| {
                    Err(TelephoneError::Modem(
                        "the modem did not answer in time".into(),
                    ))
                })
        })
    }
}

fn modem_error(e: zbus::Error) -> TelephoneError {
    TelephoneError::Modem(e.to_string())
}

fn path(text: &str) -> Result<ObjectPath<'_>, TelephoneError> {
    ObjectPath::try_from(text).map_err(|_| TelephoneError::NoSuchCall)
}

async fn first(
    conn: &zbus::Connection,
    pick: fn(modem::Modems) -> Vec<OwnedObjectPath>,
) -> Result<OwnedObjectPath, TelephoneError> {
    let modems = modem::modems(conn)
        .await
        .map_err(|_| TelephoneError::NoModem)?;
    pick(modems)
        .into_iter()
        .next()
        .ok_or(TelephoneError::NoModem)
}

impl Telephone for Phone {
    fn place_call(&self, number: &str) -> Result<String, TelephoneError> {
        self.with_modem(|conn| async move {
            let modem = first(&conn, |m| m.voice).await?;
            let voice = modem::voice(&conn, &modem).await.map_err(modem_error)?;
            let call = voice
                .create_call(HashMap::from([("number", Value::from(number))]))
                .await
                .map_err(modem_error)?;
            modem::call(&conn, &call)
                .await
                .map_err(modem_error)?
                .start()
                .await
                .map_err(modem_error)?;
            Ok(call.as_str().to_string())
        })
    }

    fn caller(&self, call: &str) -> Result<String, TelephoneError> {
        let call = path(call)?;
        self.with_modem(|conn| async move {
            let facts = modem::call_facts(&conn, &call)
                .await
                .map_err(|_| TelephoneError::NoSuchCall)?;
            if !facts.incoming() || facts.state != modem::call_state::RINGING_IN {
                return Err(TelephoneError::NotRinging);
            }
            Ok(facts.number)
        })
    }

    fn answer(&self, call: &str) -> Result<(), TelephoneError> {
        let call = path(call)?;
        self.with_modem(|conn| async move {
            modem::call(&conn, &call)
                .await
                .map_err(modem_error)?
                .accept()
                .await
                .map_err(modem_error)
        })
    }

    fn send_text(&self, number: &str, body: &str) -> Result<(), TelephoneError> {
        self.with_modem(|conn| async move {
            let modem = first(&conn, |m| m.messaging).await?;
            let messaging = modem::messaging(&conn, &modem).await.map_err(modem_error)?;
            let sms = messaging
                .create(HashMap::from([
                    ("number", Value::from(number)),
                    ("text", Value::from(body)),
                ]))
                .await
                .map_err(modem_error)?;
            modem::sms(&conn, &sms)
                .await
                .map_err(modem_error)?
                .send()
                .await
                .map_err(modem_error)
        })
    }

    fn inbox(&self) -> Result<Vec<InboxText>, TelephoneError> {
        self.with_modem(|conn| async move {
            let modem = first(&conn, |m| m.messaging).await?;
            let messaging = modem::messaging(&conn, &modem).await.map_err(modem_error)?;
            let mut inbox = Vec::new();
            for sms in messaging.list().await.map_err(modem_error)? {
                // A text deleted between the list and the read is simply not shown.
                if let Ok((facts, text, at)) = modem::sms_for_child(&conn, &sms).await
                    && facts.state == modem::sms_state::RECEIVED
                {
                    inbox.push(InboxText {
                        id: sms.as_str().to_string(),
                        from: facts.number,
                        text,
                        at,
                    });
                }
            }
            Ok(inbox)
        })
    }
}
