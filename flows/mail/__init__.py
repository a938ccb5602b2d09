"""Email: building messages safely, delivering them over SMTP, the local mail catcher.

* ``message``  ``build_message`` and the header-safety helpers
* ``smtp``     ``SmtpTransport`` (smtp://, STARTTLS, smtps://), retries, ``transport_from_settings``
* ``catcher``  the embedded SMTP catcher on 127.0.0.1 and ``ensure_running``
* ``mailbox``  the folder the catcher writes and ``touchpoints mail`` / the web app read
"""
