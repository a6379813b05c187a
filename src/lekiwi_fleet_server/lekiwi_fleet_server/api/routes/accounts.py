"""Operator accounts (admin): list, create, change role, disable, set a password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field, StrictBool

from lekiwi_fleet_server.api.admin import OPERATOR_NAME
from lekiwi_fleet_server.api.deps import Accounts, AdminOperator
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.domain.roles import Role
from lekiwi_fleet_server.store.accounts import Account, AccountExists, UnknownAccount

# Every error status the routes below can answer, each with the one error body.
router = APIRouter(prefix='/api/v1/accounts', tags=['accounts'],
                   responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))


class AccountOut(BaseModel):
    name: str
    role: Role
    created_at: float
    disabled: bool


class AccountCreate(BaseModel):
    name: str = Field(pattern=f'^{OPERATOR_NAME.pattern}$')
    role: Role
    password: str = Field(min_length=8, max_length=1024)


class AccountChange(BaseModel):
    role: Role | None = None
    disabled: StrictBool | None = None  # not 0/1: the schema says boolean
    password: str | None = Field(None, min_length=8, max_length=1024)


def _out(account: Account) -> AccountOut:
    return AccountOut(name=account.name, role=account.role, created_at=account.created_at,
                      disabled=account.disabled)


@router.get('', response_model=list[AccountOut])
def list_accounts(accounts: Accounts, _admin: AdminOperator) -> list[AccountOut]:
    """List every account."""
    return [_out(a) for a in accounts.store.list_accounts()]


@router.post('', response_model=AccountOut, status_code=status.HTTP_201_CREATED)
def create_account(body: AccountCreate, accounts: Accounts,
                   _admin: AdminOperator) -> AccountOut:
    """Create a password account."""
    try:
        return _out(accounts.create_account(body.name, body.role, body.password))
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except AccountExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.patch('/{name}', response_model=AccountOut)
def change_account(name: Annotated[str, Path(pattern=f'^{OPERATOR_NAME.pattern}$')],
                   body: AccountChange, accounts: Accounts,
                   _admin: AdminOperator) -> AccountOut:
    """Change an account's role, disable or enable it, or set its password (sessions end)."""
    try:
        if body.password is not None:
            accounts.set_password(name, body.password)
        account = accounts.store.update_account(name, now=accounts.now(), role=body.role,
                                                disabled=body.disabled)
    except UnknownAccount as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return _out(account)
