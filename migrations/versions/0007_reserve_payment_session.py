"""reserve_payment_session(): a checkout's reservation in one round trip

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-11 12:00:00

Every checkout reserves a `creating` session under the order's row lock before the provider is
called. As a transaction on the driver that was four round trips (BEGIN, the locking read, the
insert, COMMIT), plus one before it to check the bearer. One statement cannot do it: its check for
another open session would read the snapshot taken before it waited for the lock, and two double
clicks could both reserve. A VOLATILE PL/pgSQL function can: each query in it takes a fresh
snapshot, so the check after the lock sees the reservation committed by the request it waited on,
exactly as the transaction did. Called alone, the function is one autocommitted statement.

The caller passes the hash of the bearer's access token (NULL when it has already checked the
operator key): a wrong token matches no row, so it locks nothing and reserves nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# `app.payments.writer.reserve_session` is the only caller; keep the two in step.
_CREATE = """
CREATE FUNCTION reserve_payment_session(
    p_order_id uuid,
    p_token_hash text,
    p_payable order_status[],
    p_session_id uuid,
    p_provider text,
    p_state_token text,
    p_expires_at timestamptz,
    p_open payment_status[],
    p_now timestamptz
) RETURNS TABLE (
    reserved boolean,
    order_status order_status,
    order_reference text,
    order_total_amount bigint,
    order_currency text,
    order_customer_name text,
    order_customer_email text,
    order_customer_phone text,
    order_customer_company text,
    order_customer_address jsonb
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT o.status, o.reference, o.total_amount, o.currency, o.customer_name, o.customer_email,
           o.customer_phone, o.customer_company, o.customer_address
    INTO order_status, order_reference, order_total_amount, order_currency, order_customer_name,
         order_customer_email, order_customer_phone, order_customer_company, order_customer_address
    FROM orders AS o
    WHERE o.id = p_order_id AND (p_token_hash IS NULL OR o.access_token_hash = p_token_hash)
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- no such order, or not the bearer's: no row, nothing locked
    END IF;
    reserved := false;
    IF order_status = ANY (p_payable) THEN
        -- A fresh snapshot, taken after the lock: a reservation committed meanwhile is seen.
        INSERT INTO payment_sessions (id, order_id, provider, state_token, amount, currency,
                                      communication, status, expires_at, sync_attempts)
        SELECT p_session_id, p_order_id, p_provider, p_state_token, order_total_amount, order_currency,
               order_reference, 'creating', p_expires_at, 0
        WHERE NOT EXISTS (
            SELECT FROM payment_sessions AS s
            WHERE s.order_id = p_order_id AND s.status = ANY (p_open) AND s.expires_at > p_now
        );
        reserved := FOUND;
    END IF;
    RETURN NEXT;
END
$$
"""

_DROP = (
    "DROP FUNCTION reserve_payment_session(uuid, text, order_status[], uuid, text, text, timestamptz, "
    "payment_status[], timestamptz)"
)


def upgrade() -> None:
    op.execute(_CREATE)


def downgrade() -> None:
    op.execute(_DROP)
