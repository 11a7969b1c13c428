-- Platform-managed apps that are services (add-on servers): volumes mounted into every dyno
-- of the formation, and the apps whose networks those dynos join. JSON lists.
ALTER TABLE apps ADD COLUMN service_mounts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE apps ADD COLUMN service_joins TEXT NOT NULL DEFAULT '[]';
