-- Pepper rotation at the switch: each published version records the
-- pepper it was built with (registry_meta.registry_pepper_version, written
-- with registry_version), and Verify derives with that pepper. A registry
-- imported before this records none: it is the pepper of its records.
INSERT INTO registry_meta (key, value)
SELECT 'registry_pepper_version', CAST(MAX(pepper_version) AS TEXT)
FROM citizen_records WHERE until_version IS NULL
HAVING COUNT(*) > 0;
