-- A service's dynos listen on $PORT (add-on servers): each counts as up only once it accepts
-- connections there, as web dynos do (issue 13). The servers made before this column are the
-- apps with volumes.
ALTER TABLE apps ADD COLUMN service_listens BIGINT NOT NULL DEFAULT 0;
UPDATE apps SET service_listens = 1 WHERE service_mounts <> '[]' AND service_host_network = 0;
