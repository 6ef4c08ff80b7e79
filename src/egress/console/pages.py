"""Placeholder for the console's HTML pages (replaced by the pages' own module)."""

from fastapi import APIRouter

router = APIRouter()
