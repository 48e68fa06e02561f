"""Accounts: the store (people, sign-ins, invitations, guesses, reserved names) and the
pages that use it (sign up, sign in, sign out, the account page)."""
