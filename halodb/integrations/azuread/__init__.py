"""Azure AD (Microsoft Entra ID) integration: Microsoft Graph users into Halo."""
