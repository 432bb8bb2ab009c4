-- A tenant's legal particulars for its invoices: legal name, address and
-- tax code (mã số thuế), as JSON; '{}' until the agency records them.
ALTER TABLE tenants ADD COLUMN legal TEXT NOT NULL DEFAULT '{}';
