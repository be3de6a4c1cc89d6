-- What each device last said about its guards (D1, D5): the JSON of
-- `domain::device_health::DeviceGuards`, and when it said it. Operational state, like the
-- inventory: replaced as devices report, not audited.
ALTER TABLE devices ADD COLUMN guards TEXT;
ALTER TABLE devices ADD COLUMN guards_at BIGINT;
