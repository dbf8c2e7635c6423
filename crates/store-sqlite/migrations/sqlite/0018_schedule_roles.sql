-- opsbook schema v18: the roles of the credential a schedule was created with (a JSON
-- array; NULL for schedules made before): its runs never have more.
ALTER TABLE schedules ADD COLUMN roles TEXT;
