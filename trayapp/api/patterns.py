"""Patterns and their run context: what a pattern declares and what its updater gets.

:class:`Pattern` is the base class (id, title, ``Settings`` model, scopes, schedule, the cells
and collections it uses); :class:`UpdateContext` is the one argument of ``bg_updater``
(``ctx.settings``, ``ctx.cell()``, ``ctx.collection()``, ``ctx.transaction()``, ``ctx.http``,
``ctx.google``, ``ctx.log``, ``ctx.now()``). Settings are pydantic models: ``BaseModel``,
``Field``, ``HttpUrl``, ``AnyHttpUrl``, ``SecretStr`` and ``field_validator`` are re-exported so a
pattern needs no other import to declare them. A ``SecretStr`` setting is kept in the keyring
(or the accounts' 0600 file), never in the database; the updater reads it with
``ctx.settings.token.get_secret_value()``.
"""

from __future__ import annotations

from pydantic import AnyHttpUrl, BaseModel, Field, HttpUrl, SecretStr, field_validator

from trayapp.core.patterns import API_VERSION, CellSpec, NoSettings, Pattern, UpdateContext

__all__ = [
    "API_VERSION",
    "AnyHttpUrl",
    "BaseModel",
    "CellSpec",
    "Field",
    "HttpUrl",
    "NoSettings",
    "Pattern",
    "SecretStr",
    "UpdateContext",
    "field_validator",
]
