-- The app that runs an add-on's server, when its provider runs one on Ouro: its dynos join the
-- networks of the apps the add-on is attached to (and no others).
ALTER TABLE addons ADD COLUMN service_app TEXT;
