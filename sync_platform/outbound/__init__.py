"""Write-back: changes the support system asks for, written into each CRM exactly once."""
