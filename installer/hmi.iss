; Inno Setup script: the Windows installer, made from the same one-folder bundle as the
; Linux archive (build.spec). It cannot be built on the Linux CI machine; on Windows:
;
;   py -3.11 -m venv .venv && .venv\Scripts\pip install -e ".[dev]"
;   .venv\Scripts\pyinstaller --noconfirm build.spec          -> dist\hmi\hmi.exe, hmiw.exe
;   dist\hmi\hmi.exe --self-test                                 (must print "self-test passed")
;   iscc /DAppVersion=0.1.0 installer\hmi.iss                    -> dist\hmi-0.1.0-windows-x64-setup.exe
;
; (Inno Setup 6.3 or later: iscc.exe is in "C:\Program Files (x86)\Inno Setup 6".)
; docs/packaging.md has the details. The installer puts only the program into Program
; Files (or, for a per-user install, %LOCALAPPDATA%\Programs); each user's historian,
; certificates, logs and settings live in %LOCALAPPDATA%\hmi, which the uninstaller keeps.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "HMI"
#define AppExe "hmiw.exe"
#define ConsoleExe "hmi.exe"

[Setup]
; Fixed for every version of this product: Windows finds the previous install by it.
AppId={{DC72F63F-3047-46FB-9141-9A7336B9C8BD}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=HMI project
AppComments=Desktop HMI/SCADA workstation for machine digital twins
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Per-user by default (no administrator needed); the dialog offers an install for all users.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
SourceDir=..
OutputDir=dist
OutputBaseFilename=hmi-{#AppVersion}-windows-x64-setup
SetupIconFile=resources\hmi.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName} {#AppVersion}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; A running HMI holds its files open: ask to close it rather than replacing files under it.
CloseApplications=yes
RestartApplications=no

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[InstallDelete]
; An update replaces the whole program folder, so no file of an older version lingers.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "dist\hmi\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; Parameters: "run"; WorkingDir: "{app}"; Comment: "Start the HMI (the demo plant until you open a project)"
Name: "{group}\{#AppName} self-test"; Filename: "{cmd}"; Parameters: "/k ""{app}\{#ConsoleExe}"" --self-test"; WorkingDir: "{app}"; Comment: "Check this installation"
Name: "{group}\{#AppName} command prompt"; Filename: "{cmd}"; Parameters: "/k cd /d ""{app}"" && {#ConsoleExe} --help"; WorkingDir: "{app}"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Parameters: "run"; WorkingDir: "{app}"; Tasks: desktopicon

[Run]
; In a console window that stays open, so the summary can be read.
Filename: "{cmd}"; Parameters: "/k ""{app}\{#ConsoleExe}"" --self-test"; WorkingDir: "{app}"; Description: "Check the installation now (hmi --self-test, about 20 s)"; Flags: postinstall skipifsilent unchecked nowait
Filename: "{app}\{#AppExe}"; Parameters: "run"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only the program folder; %LOCALAPPDATA%\hmi (historian, certificates, logs) stays.
Type: filesandordirs; Name: "{app}\_internal"
