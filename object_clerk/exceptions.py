"""object-clerk 1.1.0's exception module: its six names, where 1.1.0 code imports them.

Each is a class of object_clerk's own tree (:mod:`object_clerk.errors`), placed so that an
``except`` written for 1.1.0 catches what 1.1.0 raised in the same situation.
"""

from object_clerk.errors import (
    ObjectClerkException,
    ObjectClerkServerAuthException,
    ObjectClerkServerInternalException,
    ObjectNotFoundException,
    ObjectSaveException,
    ObjectVerificationException,
)

__all__ = [
    "ObjectClerkException",
    "ObjectClerkServerAuthException",
    "ObjectClerkServerInternalException",
    "ObjectNotFoundException",
    "ObjectSaveException",
    "ObjectVerificationException",
]
