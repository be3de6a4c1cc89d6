-- Device certificates are short-lived and renewed over the Sync stream (D1, D7).
-- Every certificate a device was given or was seen with, so that a renewed certificate finds
-- the same device before its first use, and staff can see when the one in use expires.
-- `devices.cert_fingerprint` stays the certificate in use; a renewed one takes its place the
-- first time the device connects with it, and every older one is then superseded.
CREATE TABLE device_certificates (
    fingerprint    TEXT PRIMARY KEY,
    device_id      TEXT NOT NULL REFERENCES devices (id),
    issued_at      BIGINT NOT NULL,
    not_after      BIGINT NOT NULL,
    first_used_at  BIGINT,
    superseded_at  BIGINT
);
CREATE INDEX device_certificates_device ON device_certificates (device_id, issued_at);
