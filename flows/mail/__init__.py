"""Email: building messages safely, delivering them over SMTP, the local mail catcher."""
